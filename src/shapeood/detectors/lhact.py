"""LHAct (Yuan, He, Han & Yin): rectify extremely low and high activations.

Elementwise with ``tl < th`` and ``n = 2``: ``u = max(h, tl)``; ``g(u) = u`` for ``u < th``, else
``u / sqrt(1 + (u / th)^4) + tl`` (the map jumps at ``th``, as in the official code); score =
energy (T = 1) of ``W g(h) + b``. Defaults are the official ImageNet ResNet-50 thresholds;
``th_percentile`` / ``tl_percentile`` instead fit them as percentiles of all ID activations.
"""

from __future__ import annotations

import math

import torch

from shapeood import shaping
from shapeood.detectors._fitting import activation_percentile
from shapeood.detectors.base import Detector, check_score_fn
from shapeood.detectors.registry import register_detector
from shapeood.head import LinearHead

DEFAULT_TH = 1.3520756840705868
DEFAULT_TL = 0.21940805315971373


@register_detector
class LHAct(Detector):
    """LHAct: raise activations below ``tl_`` to it, squash those above ``th_``."""

    name = "lhact"
    description = "LHAct: lift activations below tl, squash those above th; energy"
    changes_logits = True

    def __init__(
        self,
        th: float = DEFAULT_TH,
        tl: float = DEFAULT_TL,
        th_percentile: float | None = None,
        tl_percentile: float | None = None,
        score_fn: str = "energy",
    ) -> None:
        self.th = th
        self.tl = tl
        self.th_percentile = th_percentile
        self.tl_percentile = tl_percentile
        self.score_fn = score_fn

    def _validate_params(self) -> None:
        check_score_fn(self.score_fn)
        for key in ("th", "tl"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {value!r}")

    def _fit(
        self, head: LinearHead, features: torch.Tensor | None, labels: torch.Tensor | None
    ) -> None:
        th, tl = float(self.th), float(self.tl)
        if self.th_percentile is not None or self.tl_percentile is not None:
            h = self._require_features(features, "th/tl percentiles")
            if self.th_percentile is not None:
                th = activation_percentile(h, self.th_percentile, "th_percentile")
            if self.tl_percentile is not None:
                tl = activation_percentile(h, self.tl_percentile, "tl_percentile")
        if not 0 <= tl < th:
            raise ValueError(f"LHAct needs 0 <= tl < th, got tl={tl!r}, th={th!r}")
        self.th_ = th
        self.tl_ = tl

    def _shaped_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head_(shaping.lhact(h, th=self.th_, tl=self.tl_))
