"""Scores of the plain logits: MSP, MaxLogit and Energy (no shaping, nothing to learn)."""

from __future__ import annotations

from typing import ClassVar

from shapeood._types import ScoreName
from shapeood.detectors.base import Detector
from shapeood.detectors.constraints import TEMPERATURE, Constraint
from shapeood.detectors.registry import register_detector


@register_detector
class MSP(Detector):
    """Maximum softmax probability: ``score = max_c softmax(z)_c`` with ``z = W h + b``."""

    name = "msp"
    description = "maximum softmax probability of the plain logits (Hendrycks & Gimpel)"
    logit_score: ClassVar[ScoreName] = "msp"

    def __init__(self) -> None:
        pass


@register_detector
class MaxLogit(Detector):
    """Maximum logit (OpenOOD "MLS"): ``score = max_c z_c``."""

    name = "max_logit"
    description = "largest plain logit (OpenOOD MLS)"
    logit_score: ClassVar[ScoreName] = "max_logit"

    def __init__(self) -> None:
        pass


@register_detector
class Energy(Detector):
    """Energy score (OpenOOD "EBO"): ``score = T * logsumexp(z / T)`` (negative free energy)."""

    name = "energy"
    description = "negative free energy T*logsumexp(z/T) of the plain logits (OpenOOD EBO)"

    param_constraints: ClassVar[dict[str, Constraint]] = {"temperature": TEMPERATURE}

    def __init__(self, *, temperature: float = 1.0) -> None:
        self.temperature = temperature


def check_temperature(temperature: float) -> None:
    """A temperature must be a finite number > 0 (the declared ``TEMPERATURE`` constraint)."""
    TEMPERATURE(temperature, "temperature")
