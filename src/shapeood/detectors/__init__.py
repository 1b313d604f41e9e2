"""OOD detectors on pooled penultimate features, one class per method behind one contract.

``create_detector(name, **params)`` builds one, ``list_detectors()`` describes all of them
(defaults, APS sweep, presets), ``register_detector`` adds a new one. Every detector follows
``Detector``: ``fit(head, features=None, labels=None) -> self``, ``score(features)`` (N,) with
higher = more in-distribution, ``logits``/``predict`` on the shaped logits.
"""

from __future__ import annotations

from shapeood.detectors.ash import ASHB, ASHP, ASHS
from shapeood.detectors.base import Detector
from shapeood.detectors.dice import DICE
from shapeood.detectors.himplos import HIMPLoS
from shapeood.detectors.lhact import LHAct
from shapeood.detectors.logit_scores import MSP, Energy, MaxLogit
from shapeood.detectors.odin import ODIN
from shapeood.detectors.react import ReAct
from shapeood.detectors.registry import (
    DetectorInfo,
    create_detector,
    detector_class,
    list_detectors,
    register_detector,
)
from shapeood.detectors.scale import SCALE

__all__ = [
    "ASHB",
    "ASHP",
    "ASHS",
    "DICE",
    "MSP",
    "ODIN",
    "SCALE",
    "Detector",
    "DetectorInfo",
    "Energy",
    "HIMPLoS",
    "LHAct",
    "MaxLogit",
    "ReAct",
    "create_detector",
    "detector_class",
    "list_detectors",
    "register_detector",
]
