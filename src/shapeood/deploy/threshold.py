"""The decision threshold of an OOD-aware classifier, from the scores of ID images.

Rule (scores ``s_1..s_n`` of ID images, higher = more in-distribution; a sample is accepted as
ID when ``score >= threshold``): with ``k = ceil(target_tpr * n)`` (at least one),

    threshold = the k-th largest score = sorted(s, descending)[k - 1].

At least ``k`` of the ``n`` ID scores are then ``>= threshold``, so the accepted fraction is
``>= target_tpr``; it is exactly ``k / n`` unless other ID scores tie with the threshold value,
which are all accepted too (a tie is never split). ``target_tpr * n`` is rounded to 9 decimals
before the ceiling, so that e.g. ``0.95 * 1000`` gives ``k = 950``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def check_target_tpr(target_tpr: Any) -> float:
    """``target_tpr`` must be a fraction in (0, 1]; a percent value gets a hint."""
    try:
        value = float(target_tpr)
    except (TypeError, ValueError) as err:
        raise ValueError(f"target_tpr must be a fraction in (0, 1], got {target_tpr!r}") from err
    if 1.0 < value <= 100.0:
        raise ValueError(
            f"target_tpr must be a fraction in (0, 1] (the share of ID images accepted), got "
            f"{target_tpr!r}; did you mean {value / 100:g}?"
        )
    if not 0.0 < value <= 1.0:
        raise ValueError(f"target_tpr must be a fraction in (0, 1], got {target_tpr!r}")
    return value


def accepted_count(n: int, target_tpr: float) -> int:
    """``k = max(1, ceil(round(target_tpr * n, 9)))``: how many ID scores must be accepted."""
    return max(1, math.ceil(round(check_target_tpr(target_tpr) * n, 9)))


def fit_threshold(scores: Any, target_tpr: float = 0.95) -> float:
    """Threshold accepting at least ``target_tpr`` of ``scores`` (module docstring: the rule).

    ``scores``: ID scores (N,), finite. Returns the k-th largest score as a Python float (the
    exact value of the float32 score, so ``score >= threshold`` is exact in float32 too).
    """
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    s = s.reshape(-1)
    if s.size == 0:
        raise ValueError("cannot set a threshold from no ID scores: give at least one ID image")
    if not np.isfinite(s).all():
        bad = int((~np.isfinite(s)).sum())
        raise ValueError(f"{bad} ID score(s) are NaN or infinite: cannot set a threshold")
    k = accepted_count(s.size, target_tpr)
    # np.partition puts the (n-k)-th smallest in place: the k-th largest.
    return float(np.partition(s, s.size - k)[s.size - k])


def accepted_rate(scores: Any, threshold: float) -> float:
    """Fraction of ``scores`` accepted as ID (``score >= threshold``)."""
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    return float((s.reshape(-1) >= threshold).mean()) if s.size else float("nan")
