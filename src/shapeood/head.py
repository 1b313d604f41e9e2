"""The classifier's last linear layer as data: ``logits = h @ W.T + b``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shapeood._validation import as_tensor


@dataclass(frozen=True, eq=False)
class LinearHead:
    """Weight ``W`` (C, D) and bias ``b`` (C,) of a linear classifier.

    Calling the head maps pooled features ``h`` (N, D) to logits ``h @ W.T + b`` (N, C).
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight: Any, bias: Any = None) -> None:
        w = as_tensor(weight, "weight").detach()
        if w.ndim != 2:
            raise ValueError(f"head weight must be (C, D), got shape {tuple(w.shape)}")
        if not w.is_floating_point():
            w = w.float()
        b = (
            torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
            if bias is None
            else (as_tensor(bias, "bias").detach().to(w.dtype))
        )
        if b.shape != (w.shape[0],):
            raise ValueError(
                f"head bias must have shape ({w.shape[0]},) to match weight {tuple(w.shape)}, "
                f"got {tuple(b.shape)}"
            )
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise ValueError("head weight or bias contains NaN or infinite values")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> LinearHead:
        """Copy the parameters of an ``nn.Linear``."""
        return cls(layer.weight.detach(), None if layer.bias is None else layer.bias.detach())

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def to(self, *args: Any, **kwargs: Any) -> LinearHead:
        """Move/cast like ``Tensor.to``; returns a new head."""
        return LinearHead(self.weight.to(*args, **kwargs), self.bias.to(*args, **kwargs))

    def check_features(self, h: torch.Tensor, name: str = "features") -> None:
        """Raise ``ValueError`` unless ``h`` is (N, D) with D equal to the head's width."""
        if h.ndim != 2 or h.shape[1] != self.in_features:
            raise ValueError(
                f"{name} of shape {tuple(h.shape)} do not fit a head of width {self.in_features} "
                f"(weight {tuple(self.weight.shape)}): pass pooled features (N, {self.in_features})"
            )

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """``logits = h @ W.T + b`` computed in the dtype and on the device of ``h``."""
        h = h.flatten(1) if h.ndim == 4 else h
        self.check_features(h)
        w = self.weight.to(device=h.device, dtype=h.dtype)
        b = self.bias.to(device=h.device, dtype=h.dtype)
        return torch.nn.functional.linear(h, w, b)

    def into(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = h @ W.T + b`` for validated (B, D) features, written into ``out`` (B, C)."""
        w = self.weight.to(device=h.device, dtype=h.dtype)
        b = self.bias.to(device=h.device, dtype=h.dtype)
        return torch.addmm(b, h, w.t(), out=out)

    def __repr__(self) -> str:
        return f"LinearHead(num_classes={self.num_classes}, in_features={self.in_features})"
