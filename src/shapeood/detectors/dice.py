"""DICE (Sun & Li, ECCV 2022): sparsify the head by each weight's mean contribution.

``V = m * W`` with ``m`` the mean ID feature (D,), ``tau = np.percentile(V, p)`` over all C*D
entries, ``M = V > tau``; logits ``h (W * M)^T + b``; score = energy (T = 1). Default
``percentile=90`` (OpenOOD, CIFAR DenseNet); the official ImageNet ResNet-50 setting is 70
(``preset="imagenet"``). ``mean_feature=`` skips the ID features in ``fit``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from shapeood import shaping
from shapeood._types import FitSplit, ScoreName
from shapeood._validation import as_tensor
from shapeood.detectors.base import Detector
from shapeood.detectors.constraints import PERCENTILE, SCORE_FN, ArrayLike, Constraint
from shapeood.detectors.registry import register_detector
from shapeood.head import LinearHead


@register_detector
class DICE(Detector):
    """DICE: keep the head weights whose contribution ``m_j W_cj`` is above the p-th percentile."""

    name = "dice"
    description = "DICE: drop head weights with small mean contribution m*W; energy"
    requires_fit = True
    changes_logits = True
    fit_split: ClassVar[FitSplit] = "train"
    fit_skipped_by: ClassVar[tuple[str, ...]] = ("mean_feature",)
    param_constraints: ClassVar[dict[str, Constraint]] = {
        "percentile": PERCENTILE,
        "mean_feature": ArrayLike(),
        "score_fn": SCORE_FN,
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "imagenet": {"percentile": 70},
        "cifar": {"percentile": 90},
    }

    def __init__(
        self, *, percentile: float = 90, mean_feature: Any = None, score_fn: ScoreName = "energy"
    ) -> None:
        self.percentile = percentile
        self.mean_feature = mean_feature
        self.score_fn = score_fn

    def _fit(
        self, head: LinearHead, features: torch.Tensor | None, labels: torch.Tensor | None
    ) -> None:
        if self.mean_feature is not None:
            mean = as_tensor(self.mean_feature, "mean_feature").to(torch.float32).flatten()
            if mean.shape != (head.in_features,) or not bool(torch.isfinite(mean).all()):
                raise ValueError(
                    f"mean_feature must be finite with shape ({head.in_features},) to fit the "
                    f"head {tuple(head.weight.shape)}, got shape {tuple(mean.shape)}"
                )
        else:
            h = self._require_features(features, "the mean ID feature")
            mean = h.to(torch.float64).mean(dim=0).to(torch.float32)
        self.mean_feature_ = mean.cpu()
        self.mask_ = shaping.dice_mask(head.weight, self.mean_feature_, self.percentile)
        self.masked_head_ = LinearHead(head.weight * self.mask_, head.bias)

    def _shaped_logits(self, h: torch.Tensor) -> torch.Tensor:
        return shaping.shaped_linear(h, self.masked_head_)
