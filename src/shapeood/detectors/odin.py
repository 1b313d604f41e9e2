"""ODIN (Liang, Li & Srikant, ICLR 2018): temperature scaling plus input perturbation.

On a normalised image batch ``x``: ``yhat = argmax f(x)``; ``L = CE(f(x) / T, yhat)``;
``g = +1 where dL/dx >= 0 else -1`` (an exactly-zero gradient gives +1); OpenOOD divides channel
c of ``g`` by the normalisation std ``s_c`` (``variant="openood"``, the default) while the
ReAct/LHAct/HIMPLoS copies do not (``variant="react"``); ``x' = x - noise * g``;
``score = max softmax(f(x') / T)``, ``pred = argmax f(x')``.

ODIN needs the network: use ``score_inputs(model, x)`` / ``predict_inputs(model, x)``. On cached
features only the noise-free part exists (``noise=0``: max softmax of ``z / T``). Defaults follow
OpenOOD (T = 1000, noise = 0.0014; APS over T in {1, 10, 100, 1000} x noise in {0.0014, 0.0028}).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from shapeood.detectors.base import Detector
from shapeood.detectors.logit_scores import check_temperature
from shapeood.detectors.registry import register_detector

IMAGENET_STD = (0.229, 0.224, 0.225)
VARIANTS = ("openood", "react")


def _logit_function(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The callable that maps images to logits (an adapted model's wrapped network)."""
    wrapped = getattr(model, "model", None)
    if hasattr(model, "features") and hasattr(model, "head") and callable(wrapped):
        return wrapped
    if not callable(model):
        raise ValueError(f"ODIN needs a callable model (images -> logits), got {type(model)}")
    return model


@register_detector
class ODIN(Detector):
    """ODIN: max softmax at temperature ``T`` after a gradient-sign step on the input."""

    name = "odin"
    description = "ODIN: temperature-scaled MSP after an input perturbation (needs the model)"
    requires_model = True
    default_sweep: ClassVar[dict[str, list]] = {
        "temperature": [1, 10, 100, 1000],
        "noise": [0.0014, 0.0028],
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "openood": {"temperature": 1000, "noise": 0.0014, "variant": "openood"},
        "himplos": {"temperature": 1000, "noise": 0.004, "variant": "react"},
    }

    def __init__(
        self,
        temperature: float = 1000,
        noise: float = 0.0014,
        variant: str = "openood",
        std: Sequence[float] | None = None,
    ) -> None:
        self.temperature = temperature
        self.noise = noise
        self.variant = variant
        self.std = std

    def _validate_params(self) -> None:
        check_temperature(self.temperature)
        if not isinstance(self.noise, (int, float)) or not math.isfinite(self.noise):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise!r}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")

    # ------------------------------------------------------------ cached features
    def _score_from_logits(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.noise != 0:
            raise ValueError(
                "ODIN perturbs the input image, which cached features cannot do: call "
                "score_inputs(model, images), or set noise=0 for temperature scaling only"
            )
        return torch.softmax(logits / float(self.temperature), dim=1).amax(dim=1)

    # ------------------------------------------------------------ images
    def _channel_std(self, model: Any, x: torch.Tensor) -> torch.Tensor:
        std = self.std
        if std is None:
            cfg = getattr(model, "pretrained_cfg", None) or {}
            std = cfg.get("std", IMAGENET_STD) if isinstance(cfg, dict) else IMAGENET_STD
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).flatten()
        if s.numel() not in (1, x.shape[1]) or not bool((s > 0).all()):
            raise ValueError(
                f"std must hold one positive value per input channel ({x.shape[1]}), got {std!r}"
            )
        return s.view(1, -1, *([1] * (x.ndim - 2)))

    def _perturbed_logits(self, model: Any, images: Any) -> torch.Tensor:
        self._validate_params()
        forward = _logit_function(model)
        x = torch.as_tensor(images)
        if not x.is_floating_point() or x.ndim < 2:
            raise ValueError(
                f"ODIN needs a normalised float image batch (N, C, H, W), got {tuple(x.shape)} "
                f"of dtype {x.dtype}"
            )
        x = x.detach().clone().requires_grad_(True)
        temperature = float(self.temperature)
        with torch.enable_grad():
            logits = forward(x)
            loss = F.cross_entropy(logits / temperature, logits.detach().argmax(dim=1))
            (grad,) = torch.autograd.grad(loss, x)
        sign = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
        if self.variant == "openood":
            sign = sign / self._channel_std(model, x)
        with torch.no_grad():
            return forward(x.detach() - float(self.noise) * sign) / temperature

    def score_and_predict_inputs(
        self, model: Any, images: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(score, pred)`` on a normalised image batch; the model should be in eval mode."""
        logits = self._perturbed_logits(model, images)
        return torch.softmax(logits, dim=1).amax(dim=1), logits.argmax(dim=1)

    def score_inputs(self, model: Any, images: Any) -> torch.Tensor:
        """ODIN score (N,) of a normalised image batch, higher = more in-distribution."""
        return self.score_and_predict_inputs(model, images)[0]

    def predict_inputs(self, model: Any, images: Any) -> torch.Tensor:
        """Prediction on the perturbed inputs (OpenOOD's ODIN pred)."""
        return self.score_and_predict_inputs(model, images)[1]
