"""Scores of the plain logits: MSP, MaxLogit and Energy (no shaping, nothing to learn)."""

from __future__ import annotations

import math

import torch

from shapeood import scores
from shapeood.detectors.base import Detector
from shapeood.detectors.registry import register_detector


@register_detector
class MSP(Detector):
    """Maximum softmax probability: ``score = max_c softmax(z)_c`` with ``z = W h + b``."""

    name = "msp"
    description = "maximum softmax probability of the plain logits (Hendrycks & Gimpel)"

    def __init__(self) -> None:
        pass

    def _score_from_logits(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return scores.msp(logits)


@register_detector
class MaxLogit(Detector):
    """Maximum logit (OpenOOD "MLS"): ``score = max_c z_c``."""

    name = "max_logit"
    description = "largest plain logit (OpenOOD MLS)"

    def __init__(self) -> None:
        pass

    def _score_from_logits(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return scores.max_logit(logits)


@register_detector
class Energy(Detector):
    """Energy score (OpenOOD "EBO"): ``score = T * logsumexp(z / T)`` (negative free energy)."""

    name = "energy"
    description = "negative free energy T*logsumexp(z/T) of the plain logits (OpenOOD EBO)"

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def _validate_params(self) -> None:
        check_temperature(self.temperature)

    def _score_from_logits(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return scores.energy(logits, temperature=float(self.temperature))


def check_temperature(temperature: float) -> None:
    """A temperature must be a finite number > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError) as err:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}") from err
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
