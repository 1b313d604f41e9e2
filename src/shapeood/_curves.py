"""Binary ranking curves in plain numpy: ROC, precision-recall, trapezoid area, average precision.

The results equal scikit-learn's ``roc_curve`` (``drop_intermediate=True``),
``precision_recall_curve``, ``auc``, ``average_precision_score`` and ``roc_auc_score`` for binary
labels without sample weights, value for value (tested against it), so that the metrics match
the reference evaluators that call those functions without importing scikit-learn at run time.

Notation: sort the scores descending and cut after the last sample of each distinct score; at
cut ``k`` (zero-based index ``i_k`` into the sorted order) ``tps[k]`` = positives at or above
the cut (a float64 running sum of the labels) and ``fps[k] = 1 + i_k - tps[k]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["auc", "average_precision", "precision_recall_curve", "roc_auc", "roc_curve"]


def _binary_inputs(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(positive as float64 0/1, scores)``, both 1-D and of one length; NaN rejected."""
    positive = np.asarray(y_true).reshape(-1)
    scores = np.asarray(y_score).reshape(-1)
    if positive.size != scores.size:
        raise ValueError(
            f"y_true and y_score must have the same length, got {positive.size} and {scores.size}"
        )
    if positive.size == 0:
        raise ValueError("y_true is empty: pass at least one sample")
    if scores.dtype.kind not in "biuf":
        raise ValueError(f"y_score must be numeric, got dtype {scores.dtype}")
    if scores.dtype.kind == "f" and np.isnan(scores).any():
        raise ValueError("y_score contains NaN: NaN has no order")
    return (positive == 1).astype(np.float64), scores


def _counts_at_cuts(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fps, tps, thresholds)`` at each distinct score, scores descending (see module doc)."""
    positive, scores = _binary_inputs(y_true, y_score)
    order = np.argsort(scores, kind="stable")[::-1]  # ties stay together: only their ends count
    sorted_scores = scores[order]
    last_of_value = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    cuts = np.concatenate([last_of_value, [sorted_scores.size - 1]])
    tps = np.cumsum(positive[order], dtype=np.float64)[cuts]
    fps = 1.0 + cuts.astype(np.float64) - tps
    return fps, tps, sorted_scores[cuts]


def roc_curve(
    y_true: Any, y_score: Any, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)``, ``fpr = fps / fps[-1]``, ``tpr = tps / tps[-1]``.

    The curve starts at ``(0, 0)`` with threshold ``inf``. ``drop_intermediate`` removes every
    inner cut whose second differences of ``fps`` and ``tps`` are both zero (a point collinear
    with its neighbours on a horizontal or vertical run, or on a line of slope one step each);
    it changes which point is the first with ``tpr >= 0.95``. With no negatives (positives)
    ``fpr`` (``tpr``) is all NaN.
    """
    fps, tps, thresholds = _counts_at_cuts(y_true, y_score)
    if drop_intermediate and fps.size > 2:
        corner = (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0)
        keep = np.concatenate([[True], corner, [True]])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps = np.concatenate([[0.0], fps])
    tps = np.concatenate([[0.0], tps])
    thresholds = np.concatenate([[np.inf], thresholds.astype(np.float64)])
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thresholds


def precision_recall_curve(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)``, recall decreasing, ending at ``(1, 0)``.

    ``precision = tps / (tps + fps)``, ``recall = tps / tps[-1]`` (all 1 without positives), at
    every distinct score from the lowest up; ``thresholds`` ascending (one fewer entry).
    """
    fps, tps, thresholds = _counts_at_cuts(y_true, y_score)
    predicted = tps + fps  # >= 1 at every cut
    precision = tps / predicted
    recall = tps / tps[-1] if tps[-1] != 0 else np.ones(tps.shape)
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        thresholds[::-1],
    )


def auc(x: Any, y: Any) -> float:
    """Trapezoid area ``direction * sum((x[i+1] - x[i]) * (y[i+1] + y[i]) / 2)``.

    ``direction`` is -1 when ``x`` never increases and has a decrease, else 1; ``x`` that both
    increases and decreases is a ValueError, as are fewer than 2 points.
    """
    x = np.asarray(x).reshape(-1)
    y = np.asarray(y).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"at least 2 points are needed to compute an area, got {x.size}")
    dx = np.diff(x)
    direction = 1.0
    if np.any(dx < 0):
        if not np.all(dx <= 0):
            raise ValueError("x is neither increasing nor decreasing: cannot integrate over it")
        direction = -1.0
    return float(direction * (dx * (y[1:] + y[:-1]) / 2.0).sum(dtype=np.result_type(y, 1.0)))


def average_precision(y_true: Any, y_score: Any) -> float:
    """Step-wise area ``AP = sum_k (R_k - R_{k-1}) P_k`` over the precision-recall curve
    (no interpolation); ``-0.0`` from rounding is returned as ``0.0``."""
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Area under :func:`roc_curve` by :func:`auc`; NaN when ``y_true`` has one class only."""
    if np.unique(np.asarray(y_true)).size != 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return auc(fpr, tpr)
