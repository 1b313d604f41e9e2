"""Stage 3, fit: each detector learns from the ID split its traits ask for.

``fit_split = "train"`` (mean feature, class prototypes) prefers ID train, then ID val;
``"val"`` (activation percentiles, as OpenOOD's postprocessor setup) prefers ID val, then ID
train. Without either, a method that needs fitting is fitted on ID test, with a warning (that
leaks test data) and a note in the result.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from shapeood._types import FeatureSetLike
from shapeood.detectors import Detector, create_detector, detector_class
from shapeood.evaluation.features import Features


def fit_source(
    name: str, params: Mapping[str, Any], features: Features
) -> tuple[FeatureSetLike, str | None]:
    """``(FeatureSet to fit on, note or None)`` for method ``name`` under ``params``."""
    cls = detector_class(name)
    order = ("id_train", "id_val") if cls.fit_split == "train" else ("id_val", "id_train")
    for role in order:
        if role in features.roles:
            return features.roles[role], None
    if not cls.needs_fit(params):
        return features.roles["id_test"], None
    warnings.warn(
        f"{name} is fitted on the ID test set: the benchmark has no id_val/id_train",
        stacklevel=3,
    )
    return features.roles["id_test"], f"{name}: fitted on ID test (no id_val/id_train)"


def fit_detector(
    name: str, params: Mapping[str, Any], head: Any, source: FeatureSetLike
) -> Detector:
    """``create_detector(name, **params)`` fitted on ``source`` (labels only where needed)."""
    labels = source.labels if detector_class(name).requires_labels else None
    return create_detector(name, **params).fit(head, source.features, labels)
