"""Input checks shared by every room: each error names the problem and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from shapeood.errors import ShapeoodError

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_tensor(x: Any, name: str = "features") -> torch.Tensor:
    """Return ``x`` as a torch tensor without copying when it already is one.

    Numpy arrays become tensors that share memory; anything else goes through ``torch.as_tensor``.
    """
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a tensor or an array, got {type(x).__name__}") from err


def check_features(
    x: Any, name: str = "features", ndims: Sequence[int] = (2, 4), finite: bool = True
) -> torch.Tensor:
    """Validate a batch of activations and return it as a floating tensor.

    Checks the rank (one of ``ndims``), that the batch is not empty, the dtype is floating
    (integers are promoted to float32) and, when ``finite``, that no value is NaN or infinite.
    """
    t = as_tensor(x, name)
    if t.ndim not in ndims:
        shapes = " or ".join(
            {2: "(N, D)", 4: "(N, C, H, W)", 1: "(N,)", 3: "(N, L, D)"}.get(n, f"{n}-D")
            for n in ndims
        )
        raise ValueError(
            f"{name} must have shape {shapes}; got a {t.ndim}-D tensor of shape {tuple(t.shape)}"
        )
    if t.numel() == 0 or t.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}): pass at least one sample")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    # A NaN or inf anywhere makes the sum non-finite; the full elementwise check (much slower
    # on large batches) only runs when the cheap sum is not finite (possibly only by overflow).
    if finite and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s): check the model and "
            "its inputs (a NaN usually comes from a bad checkpoint or un-normalised data)"
        )
    return t


class Percent(float):
    """A percentile stated explicitly in percent, even when below 1: ``percent(0.85)`` = 0.85 %.

    Every percentile in shapeood is in percent, so a plain value in (0, 1) such as ``0.85`` is
    refused as a probable fraction (85 % was meant); wrapping it says it is not one.
    """

    def __repr__(self) -> str:
        return f"percent({float(self)!r})"


def percent(value: float) -> Percent:
    """Mark ``value`` as a percentage on purpose (``percent(0.85)`` keeps 0.85 %, not 85 %).

    Accepted wherever a percentile is; on the command line write ``0.85%``.
    """
    return Percent(float(value))


def check_percentile(
    p: float,
    name: str = "percentile",
    upper_inclusive: bool = False,
    allow_fraction: bool = False,
) -> float:
    """Check a percentile in [0, 100) (or [0, 100] when ``upper_inclusive``); return a float.

    The one percentile check of the project (shaping functions, detectors, ISH, CLI). A value
    strictly between 0 and 1 is refused as a probable fraction, with the percent value to use,
    unless it is wrapped by :func:`percent` (or ``allow_fraction`` is True).
    """
    bound = "[0, 100]" if upper_inclusive else "[0, 100)"
    if isinstance(p, bool):
        raise ShapeoodError(f"{name} must be a number in {bound} (percent), got {p!r}")
    try:
        value = float(p)
    except (TypeError, ValueError) as err:
        raise ShapeoodError(f"{name} must be a number in {bound} (percent), got {p!r}") from err
    ok = 0.0 <= value <= 100.0 if upper_inclusive else 0.0 <= value < 100.0
    if not ok or np.isnan(value):
        raise ShapeoodError(f"{name} must be in {bound} (a percentage, e.g. 90), got {p!r}")
    if 0.0 < value < 1.0 and not allow_fraction and not isinstance(p, Percent):
        suggested = f"{value * 100:.6g}"
        raise ShapeoodError(
            f"{name}={value!r} looks like a fraction, but percentiles are in percent: pass "
            f"{name}={suggested} for {suggested} %; if you really mean {value!r} %, pass "
            f"shapeood.percent({value!r}) (on the command line: {value!r}%)"
        )
    return value
