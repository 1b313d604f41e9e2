"""SCALE (Xu et al., ICLR 2024): scale the whole pooled feature by ``exp(S1 / S2)``.

Per sample, with the same ``k``, ``S1 = sum(h)`` and ``S2 = sum of the top-k`` as ASH,
``y = h * exp(S1 / S2)`` (nothing pruned); score = energy (T = 1) of ``W y + b``. Default
``percentile=85`` (official config and the ImageNet APS choice); OpenOOD APS grid {65, ..., 95}.
An all-zero row is left unchanged (factor 1) instead of the reference NaN. Given the plain
logits ``z = W h + b`` (``plain_logits=``), the head is linear and ``W y + b = f (z - b) + b``
with ``f = exp(S1 / S2)``: only the top-k sums are computed, no matmul.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from shapeood import shaping
from shapeood._types import ScoreName
from shapeood.detectors.base import Detector
from shapeood.detectors.constraints import PERCENTILE, SCORE_FN, Constraint
from shapeood.detectors.registry import register_detector


@register_detector
class SCALE(Detector):
    """SCALE: ``y = h * exp(sum(h) / sum(top-k of h))``; energy of ``W y + b``."""

    name = "scale"
    description = "SCALE: multiply h by exp(S1/S2) from its top (100-p)% activations; energy"
    changes_logits = True
    default_sweep: ClassVar[dict[str, list]] = {"percentile": [65, 70, 75, 80, 85, 90, 95]}
    param_constraints: ClassVar[dict[str, Constraint]] = {
        "percentile": PERCENTILE,
        "score_fn": SCORE_FN,
    }

    def __init__(self, *, percentile: float = 85, score_fn: ScoreName = "energy") -> None:
        self.percentile = percentile
        self.score_fn = score_fn

    def _shaped_logits(self, h: torch.Tensor) -> torch.Tensor:
        kernel = shaping.top_k_kernel("scale", shaping.k_for(h, self.percentile))
        return shaping.shaped_linear(h, self.head_, kernel)

    def _shaped_logits_given(self, h: torch.Tensor, plain: torch.Tensor | None) -> torch.Tensor:
        """With the plain logits ``z``: ``W (f h) + b = f (z - b) + b``, no matmul."""
        if plain is None:
            return self._shaped_logits(h)
        factor = shaping.scale_factor(h, self.percentile, checked=True)
        bias = self.head_.bias.to(device=plain.device, dtype=plain.dtype)
        return torch.addcmul(bias, factor[:, None], plain - bias)
