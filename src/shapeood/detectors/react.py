"""ReAct (Sun, Guo & Li, NeurIPS 2021): clip the pooled feature from above.

``h' = min(h, c)``; score = energy (T = 1) of ``W h' + b``. The threshold ``c`` is the
``percentile``-th value (numpy linear interpolation) over ALL values of the ID features given to
``fit`` (OpenOOD uses its ID validation split; default 90, APS over {85, 90, 95, 99}); an explicit
``threshold=`` skips fitting (the ReAct paper runs ImageNet ResNet-50 with ``threshold=1.0``).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from shapeood import shaping
from shapeood._types import FitSplit, ScoreName
from shapeood.detectors._fitting import activation_percentile
from shapeood.detectors.base import Detector
from shapeood.detectors.constraints import SCORE_FN, Constraint, Percentile, Real
from shapeood.detectors.registry import register_detector
from shapeood.head import LinearHead


@register_detector
class ReAct(Detector):
    """ReAct: clip activations at ``threshold_`` (fitted percentile of ID activations)."""

    name = "react"
    description = "ReAct: clip activations at the p-th percentile of ID activations; energy"
    requires_fit = True
    changes_logits = True
    fit_split: ClassVar[FitSplit] = "val"
    fit_skipped_by: ClassVar[tuple[str, ...]] = ("threshold",)
    alternatives: ClassVar[tuple[tuple[str, ...], ...]] = (("percentile",), ("threshold",))
    default_sweep: ClassVar[dict[str, list]] = {"percentile": [85, 90, 95, 99]}
    param_constraints: ClassVar[dict[str, Constraint]] = {
        "percentile": Percentile(upper_inclusive=True),
        "threshold": Real(allow_inf=True, optional=True),
        "score_fn": SCORE_FN,
    }

    def __init__(
        self,
        *,
        percentile: float = 90,
        threshold: float | None = None,
        score_fn: ScoreName = "energy",
    ) -> None:
        self.percentile = percentile
        self.threshold = threshold
        self.score_fn = score_fn

    def _fit(
        self, head: LinearHead, features: torch.Tensor | None, labels: torch.Tensor | None
    ) -> None:
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
        else:
            h = self._require_features(features, "its clipping threshold")
            self.threshold_ = activation_percentile(h, self.percentile, "percentile")

    def _shaped_logits(self, h: torch.Tensor) -> torch.Tensor:
        c = float(self.threshold_)

        def clip(rows: torch.Tensor, dst: torch.Tensor) -> None:
            torch.clamp(rows, max=c, out=dst)

        return shaping.shaped_linear(h, self.head_, clip)
