"""Declared hyperparameter constraints, checked once by ``Detector`` (``param_constraints``).

Each constraint is a small callable ``check(value, name)`` raising a one-line ``ValueError``
that names the parameter and what it accepts, and offers ``invalid`` (a value it refuses, so
the conformance suite can check that bad parameters give a clear error). Percentiles go through
the project's one percentile check (``shapeood._validation.check_percentile``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shapeood._types import SCORE_NAMES
from shapeood._validation import check_percentile


class Constraint:
    """What one hyperparameter accepts; ``None`` passes when ``optional``."""

    optional: bool = False
    invalid: Any = "not a valid value"

    def __call__(self, value: Any, name: str) -> None:
        if value is None and self.optional:
            return
        self.check(value, name)

    def check(self, value: Any, name: str) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Percentile(Constraint):
    """A percentage in [0, 100) (or [0, 100] with ``upper_inclusive``)."""

    upper_inclusive: bool = False
    optional: bool = False
    invalid: Any = 150

    def check(self, value: Any, name: str) -> None:
        check_percentile(value, name, upper_inclusive=self.upper_inclusive)


@dataclass(frozen=True)
class Real(Constraint):
    """A real number (not bool, not NaN), finite unless ``allow_inf``, and ``> gt`` / ``>= ge``."""

    gt: float | None = None
    ge: float | None = None
    allow_inf: bool = False
    optional: bool = False
    invalid: Any = "a word"

    def check(self, value: Any, name: str) -> None:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        number = float(value) if ok else math.nan
        ok = ok and not math.isnan(number) and (self.allow_inf or math.isfinite(number))
        ok = ok and (self.gt is None or number > self.gt) and (self.ge is None or number >= self.ge)
        if not ok:
            bounds = [
                f"{op} {bound:g}"
                for op, bound in ((">", self.gt), (">=", self.ge))
                if bound is not None
            ]
            what = "a finite number" if not self.allow_inf else "a number"
            what += f" {' and '.join(bounds)}" if bounds else ""
            what += " or None" if self.optional else ""
            raise ValueError(f"{name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of a fixed set of strings."""

    options: Sequence[str] = ()
    optional: bool = False
    invalid: Any = "no_such_option"

    def check(self, value: Any, name: str) -> None:
        if value not in self.options:
            raise ValueError(f"{name} must be one of {', '.join(self.options)}, got {value!r}")


@dataclass(frozen=True)
class ArrayLike(Constraint):
    """A tensor, an array or a (nested) sequence of numbers; shapes are checked in ``fit``."""

    optional: bool = True
    invalid: Any = "not an array"

    def check(self, value: Any, name: str) -> None:
        if isinstance(value, (torch.Tensor, np.ndarray)):
            return
        message = f"{name} must be a tensor or an array of numbers, got {value!r}"
        try:
            np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(message) from err
        if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
            raise ValueError(message)


PERCENTILE = Percentile()
TEMPERATURE = Real(gt=0)
SCORE_FN = OneOf(SCORE_NAMES)
