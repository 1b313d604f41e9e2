"""ASH (Djurisic et al., ICLR 2023): prune each sample's pooled feature to its top-k.

Per sample with ``n = D`` values, ``k = n - round_half_even(n * p / 100)`` largest entries ``K``
are kept, ``S1 = sum(h)``, ``S2 = sum_K h``:

* ASH-P: ``h_i`` on ``K``, 0 elsewhere;
* ASH-B: ``S1 / k`` on ``K``, 0 elsewhere (the sum is preserved);
* ASH-S: ``h_i * exp(S1 / S2)`` on ``K``, 0 elsewhere.

Score: energy (T = 1) of the shaped logits ``W y + b``. Defaults follow the official ImageNet
configuration of ASH-S (``percentile=90``); its official CIFAR DenseNet-100 setting is 95
(``preset="cifar"``). No official config gives ASH-P/ASH-B percentiles (they default to 90 too).
OpenOOD's "ash" is ASH-B with APS over {65, ..., 95} (``preset="openood"``: 90). An all-zero
row gives zero features (plain bias logits) instead of the reference NaN.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from shapeood import shaping
from shapeood._types import ScoreName
from shapeood.detectors.base import Detector
from shapeood.detectors.constraints import PERCENTILE, SCORE_FN, Constraint
from shapeood.detectors.registry import register_detector

PERCENTILE_SWEEP = [65, 70, 75, 80, 85, 90, 95]


class _ASH(Detector):
    """Shared body of ASH-P/B/S: shape ``h`` with one ``shaping`` function, then the head."""

    changes_logits = True
    default_sweep: ClassVar[dict[str, list]] = {"percentile": PERCENTILE_SWEEP}
    param_constraints: ClassVar[dict[str, Constraint]] = {
        "percentile": PERCENTILE,
        "score_fn": SCORE_FN,
    }

    def __init__(self, *, percentile: float = 90, score_fn: ScoreName = "energy") -> None:
        self.percentile = percentile
        self.score_fn = score_fn

    def _shape(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _shaped_logits(self, h: torch.Tensor) -> torch.Tensor:
        # Shape and multiply block by block (features validated once, by ``_prepare``).
        kernel = shaping.top_k_kernel(self.name, shaping.k_for(h, self.percentile))
        return shaping.shaped_linear(h, self.head_, kernel)


@register_detector
class ASHP(_ASH):
    """ASH-P: keep the top-k entries of ``h`` unchanged, zero the rest."""

    name = "ash_p"
    description = "ASH-P: keep each sample's top (100-p)% activations, zero the rest; energy"

    def _shape(self, h: torch.Tensor) -> torch.Tensor:
        return shaping.ash_p(h, self.percentile)


@register_detector
class ASHB(_ASH):
    """ASH-B: put ``sum(h) / k`` on the top-k entries, zero the rest (OpenOOD's "ash")."""

    name = "ash_b"
    description = "ASH-B: binarise the top (100-p)% activations to sum(h)/k; energy (OpenOOD ash)"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"openood": {"percentile": 90}}

    def _shape(self, h: torch.Tensor) -> torch.Tensor:
        return shaping.ash_b(h, self.percentile)


@register_detector
class ASHS(_ASH):
    """ASH-S: scale the top-k entries by ``exp(sum(h) / sum(top-k))``, zero the rest."""

    name = "ash_s"
    description = "ASH-S: keep the top (100-p)% activations scaled by exp(S1/S2); energy"
    # Official configs: ImageNet ResNet-50 / MobileNetV2 @90, CIFAR DenseNet-100 @95.
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "imagenet": {"percentile": 90},
        "cifar": {"percentile": 95},
    }

    def _shape(self, h: torch.Tensor) -> torch.Tensor:
        return shaping.ash_s(h, self.percentile)
