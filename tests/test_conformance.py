"""Every registered detector against the public conformance suite (no hand-kept name list)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch

from shapeood.detectors import Detector, list_detectors, register_detector
from shapeood.detectors import registry as registry_module
from shapeood.detectors.constraints import PERCENTILE, Constraint
from shapeood.testing import check_detector, parametrize_with_checks


@parametrize_with_checks([info.cls() for info in list_detectors().values()])
def test_registered_detectors_conform(detector, check):
    check(detector)


class _Broken(Detector):
    """Violates the contract: lower scores for ID data and untagged learned state."""

    name = "broken_test"
    param_constraints: ClassVar[dict[str, Constraint]] = {"percentile": PERCENTILE}

    def __init__(self, *, percentile: float = 90) -> None:
        self.percentile = percentile

    def _fit(self, head, features, labels) -> None:
        self.learned = 1.0  # no trailing underscore

    def _score_from_logits(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(logits, dim=1)


def test_the_suite_catches_a_broken_detector():
    with pytest.raises(AssertionError, match="trailing underscore"):
        check_detector(_Broken())


def test_a_newly_registered_detector_is_checked_without_other_edits():
    class Flipped(_Broken):
        name = "flipped_test"

        def _fit(self, head, features, labels) -> None:
            self.learned_ = 1.0

    register_detector(Flipped)
    try:
        assert "flipped_test" in list_detectors()
        with pytest.raises(AssertionError, match="higher must mean more in-distribution"):
            check_detector(list_detectors()["flipped_test"].cls())
    finally:
        registry_module._REGISTRY.pop("flipped_test")


def test_readme_method_example_registers_and_conforms():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Extending shapeood") :]
    start = section.index("```python") + len("```python")
    code = section[start : section.index("```", start)]
    namespace: dict = {"__name__": __name__}  # so that pickling finds the class here
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        globals()["Clip"] = namespace["Clip"]
        check_detector(namespace["Clip"]())
        assert "clip" in list_detectors()
    finally:
        registry_module._REGISTRY.pop("clip", None)
        globals().pop("Clip", None)
