"""Scores from logits: ``(N, C)`` logits -> ``(N,)`` confidence, larger = more in-distribution.

Inputs may be torch tensors or numpy arrays. float16/bfloat16 logits are scored in float32;
float32 and float64 keep their dtype. The result lives on the input's device.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from shapeood._validation import check_features

__all__ = ["energy", "max_logit", "msp"]


def _logits(logits: Any) -> torch.Tensor:
    z = check_features(logits, "logits", ndims=(2,), finite=False)
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.to(torch.float32)
    acc = z.dtype
    if not bool(torch.isfinite(z.sum(dtype=acc))):
        check_features(z, "logits", ndims=(2,), finite=True)
    return z


def msp(logits: Any) -> torch.Tensor:
    """Maximum softmax probability: ``max_c softmax(z)_c = 1 / sum_c exp(z_c - max z)``."""
    z = _logits(logits)
    top = z.max(dim=1, keepdim=True).values
    return 1.0 / torch.exp(z - top).sum(dim=1)


def max_logit(logits: Any) -> torch.Tensor:
    """Maximum logit: ``max_c z_c``."""
    return _logits(logits).max(dim=1).values


def energy(logits: Any, temperature: float = 1.0) -> torch.Tensor:
    """Negative free energy: ``T * logsumexp(z / T)`` (stable), ``T > 0``.

    >>> energy(torch.tensor([[0.0, 0.0]]))
    tensor([0.6931])
    """
    try:
        t = float(temperature)
    except (TypeError, ValueError) as err:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}") from err
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    z = _logits(logits)
    if t == 1.0:
        return torch.logsumexp(z, dim=1)
    return t * torch.logsumexp(z / t, dim=1)
