"""ReAct (Sun, Guo & Li, NeurIPS 2021): clip the pooled feature from above.

``h' = min(h, c)``; score = energy (T = 1) of ``W h' + b``. The threshold ``c`` is the
``percentile``-th value (numpy linear interpolation) over ALL values of the ID features given to
``fit`` (OpenOOD uses its ID validation split; default 90, APS over {85, 90, 95, 99}); an explicit
``threshold=`` skips fitting (the ReAct paper runs ImageNet ResNet-50 with ``threshold=1.0``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from shapeood import shaping
from shapeood._validation import check_percentile
from shapeood.detectors._fitting import activation_percentile
from shapeood.detectors.base import Detector, check_score_fn
from shapeood.detectors.registry import register_detector
from shapeood.head import LinearHead


@register_detector
class ReAct(Detector):
    """ReAct: clip activations at ``threshold_`` (fitted percentile of ID activations)."""

    name = "react"
    description = "ReAct: clip activations at the p-th percentile of ID activations; energy"
    requires_fit = True
    changes_logits = True
    default_sweep: ClassVar[dict[str, list]] = {"percentile": [85, 90, 95, 99]}

    def __init__(
        self, percentile: float = 90, threshold: float | None = None, score_fn: str = "energy"
    ) -> None:
        self.percentile = percentile
        self.threshold = threshold
        self.score_fn = score_fn

    def _validate_params(self) -> None:
        check_score_fn(self.score_fn)
        if self.threshold is None:
            check_percentile(self.percentile, upper_inclusive=True)
        elif not isinstance(self.threshold, (int, float)) or math.isnan(self.threshold):
            raise ValueError(f"threshold must be a number or None, got {self.threshold!r}")

    def _fit(
        self, head: LinearHead, features: torch.Tensor | None, labels: torch.Tensor | None
    ) -> None:
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
        else:
            h = self._require_features(features, "its clipping threshold")
            self.threshold_ = activation_percentile(h, self.percentile, "percentile")

    def _shaped_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head_(shaping.react(h, self.threshold_))
