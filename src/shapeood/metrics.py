"""OOD detection metrics under three named conventions.

Every function takes *confidence* scores, larger = more in-distribution (ID), as 1-D numpy
arrays, torch tensors or sequences, and returns Python floats in [0, 1]. Scores are compared,
never squashed: all metrics here depend only on the order of the scores, so they are first
mapped to their exact joint ranks in float64 (ties stay ties, ``1e30`` and ``1e-30`` keep their
order, ``inf`` is allowed); NaN is rejected.

Conventions (``convention=``):

* ``"openood"`` - OpenOOD v1.5 ``compute_all_metrics``: OOD is the positive class with score
  ``-conf``. FPR@95 = FPR of the first ROC point whose TPR >= 0.95 (fraction of ID samples
  rejected when 95% of OOD samples are caught). AUROC = trapezoid over the ROC points.
  AUPR-In / AUPR-Out = trapezoid (``sklearn.metrics.auc``) under the precision-recall curve
  with ID (score ``conf``) / OOD (score ``-conf``) positive.
* ``"classic"`` - ReAct / ASH / LHAct ``cal_metric``: ID is positive, threshold
  ``t = sorted(id)[round(0.05 * N_id)]`` (Python round, half to even), FPR = fraction of OOD
  scores ``> t``. AUROC / AUPR by their trapezoid over a merged ranking with ties collapsed.
* ``"nearest"`` - HIMPLoS / DICE (Hendrycks ``get_measures``): ID is positive, FPR at the ROC
  point whose recall is nearest to 0.95; AUROC = ``roc_auc_score``; AUPR = average precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from shapeood import _curves
from shapeood._types import CONVENTIONS, FprConvention

RECALL_LEVEL = 0.95

__all__ = [
    "CONVENTIONS",
    "accuracy",
    "aupr_in",
    "aupr_out",
    "auroc",
    "classic_metrics",
    "degenerate_reasons",
    "fpr_at_95",
    "nearest_metrics",
    "ood_metrics",
    "ood_table",
    "openood_metrics",
    "warn_if_degenerate",
]


# ----------------------------------------------------------------------------- input handling


def _as_1d_float64(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a 1-D float64 numpy array; ValueError on bad rank, empty input or NaN."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a 1-D array of numbers, got {type(x).__name__}") from err
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one score per sample); got shape {arr.shape}. "
            "Flatten it or pass one score per sample."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty: pass at least one score")
    nan = int(np.isnan(arr).sum())
    if nan:
        raise ValueError(
            f"{name} contains {nan} NaN score(s): NaN has no order, so no OOD metric is "
            "defined; check the detector (e.g. ASH-S/SCALE on an all-zero feature row)"
        )
    return arr


def _joint_ranks(id_scores: Any, ood_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Dense ranks (float64) of both score sets in their joint order; ties share a rank."""
    id_arr = _as_1d_float64(id_scores, "id_scores")
    ood_arr = _as_1d_float64(ood_scores, "ood_scores")
    _, inverse = np.unique(np.concatenate([id_arr, ood_arr]), return_inverse=True)
    ranks = inverse.reshape(-1).astype(np.float64)
    return ranks[: id_arr.size], ranks[id_arr.size :]


def _labelled(id_ranks: np.ndarray, ood_ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated scores and the ID indicator (1 = ID, 0 = OOD)."""
    scores = np.concatenate([id_ranks, ood_ranks])
    is_id = np.concatenate([np.ones(id_ranks.size, np.int64), np.zeros(ood_ranks.size, np.int64)])
    return scores, is_id


def _check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(
            f"unknown FPR convention {convention!r}: use one of {', '.join(CONVENTIONS)}"
        )
    return convention


def _tail_fraction(recall_level: float) -> float:
    """``1 - recall_level`` cleaned of binary noise (0.95 -> exactly the double 0.05)."""
    if not 0.0 < recall_level <= 1.0:
        raise ValueError(f"recall_level must be in (0, 1], got {recall_level!r}")
    return round(1.0 - recall_level, 12)


def _float(x: float) -> float:
    """A plain Python float; ``-0.0`` becomes ``0.0``."""
    return float(x) + 0.0


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoid rule ``sum(dx * (y[1:] + y[:-1]) / 2)`` (the order of ``np.trapezoid``)."""
    return float((np.diff(x) * (y[1:] + y[:-1]) / 2.0).sum())


# ----------------------------------------------------------------------------- single metrics


def auroc(id_scores: Any, ood_scores: Any) -> float:
    """Area under the ROC curve: ``P(s_id > s_ood) + 0.5 * P(s_id == s_ood)``.

    Identical under every convention (OpenOOD's OOD-positive ROC on ``-conf`` has the same area);
    constant scores give 0.5.

    >>> auroc([3.0, 2.0], [1.0, 2.0])
    0.875
    """
    return _rank_auroc(*_joint_ranks(id_scores, ood_scores))


def _rank_auroc(id_ranks: np.ndarray, ood_ranks: np.ndarray) -> float:
    """:func:`auroc` of joint ranks."""
    sorted_id = np.sort(id_ranks)
    below = np.searchsorted(sorted_id, ood_ranks, side="left")  # ID scores < each OOD score
    not_above = np.searchsorted(sorted_id, ood_ranks, side="right")  # ID scores <= it
    above = float(sorted_id.size) * ood_ranks.size - not_above.sum(dtype=np.float64)
    ties = (not_above - below).sum(dtype=np.float64)
    return _float((above + 0.5 * ties) / (float(sorted_id.size) * ood_ranks.size))


def aupr_in(id_scores: Any, ood_scores: Any, average_precision: bool = False) -> float:
    """Area under the precision-recall curve with ID as the positive class (score ``conf``).

    Default: trapezoid under ``precision_recall_curve`` (OpenOOD). ``average_precision=True``:
    step-wise ``average_precision_score`` (HIMPLoS / DICE / Hendrycks).
    """
    scores, is_id = _labelled(*_joint_ranks(id_scores, ood_scores))
    return _pr_area(is_id, scores, average_precision)


def aupr_out(id_scores: Any, ood_scores: Any, average_precision: bool = False) -> float:
    """Area under the precision-recall curve with OOD as the positive class (score ``-conf``).

    Default: trapezoid (OpenOOD); ``average_precision=True``: average precision.
    """
    scores, is_id = _labelled(*_joint_ranks(id_scores, ood_scores))
    return _pr_area(1 - is_id, -scores, average_precision)


def _pr_area(positive: np.ndarray, scores: np.ndarray, average_precision: bool) -> float:
    if average_precision:
        return _float(_curves.average_precision(positive, scores))
    precision, recall, _ = _curves.precision_recall_curve(positive, scores)
    return _float(_curves.auc(recall, precision))


def fpr_at_95(
    id_scores: Any,
    ood_scores: Any,
    convention: FprConvention = "openood",
    recall_level: float = RECALL_LEVEL,
) -> float:
    """False-positive rate at 95% recall, under a named convention.

    * ``"openood"``: fraction of ID scores flagged as OOD at the first ROC point (OOD positive,
      score ``-conf``, sklearn ``roc_curve``) whose TPR >= ``recall_level``.
    * ``"classic"``: fraction of OOD scores ``> sorted(id)[round((1 - recall_level) * N_id)]``.
    * ``"nearest"``: fraction of OOD scores accepted at the ROC point (ID positive) whose recall is
      nearest to ``recall_level``.
    """
    _check_convention(convention)
    _tail_fraction(recall_level)  # validates the level
    id_ranks, ood_ranks = _joint_ranks(id_scores, ood_scores)
    warn_if_degenerate(id_ranks, ood_ranks)
    if convention == "openood":
        return _openood_fpr(id_ranks, ood_ranks, recall_level)
    if convention == "classic":
        return _classic_fpr(id_ranks, ood_ranks, recall_level)
    return _nearest_fpr(id_ranks, ood_ranks, recall_level)


def degenerate_reasons(id_scores: Any, ood_scores: Any) -> list[str]:
    """Why a comparison of ``id_scores`` and ``ood_scores`` carries little or no information.

    Constant scores over both sets (a detector that ignores its input: the ``classic`` FPR@95
    is then 0.0 and AUROC 0.5), or a set whose scores take fewer than 2 distinct values.
    """
    id_arr = np.asarray(id_scores.detach().cpu() if torch.is_tensor(id_scores) else id_scores)
    ood_arr = np.asarray(ood_scores.detach().cpu() if torch.is_tensor(ood_scores) else ood_scores)
    reasons = []
    if id_arr.size and ood_arr.size and np.unique(np.concatenate([id_arr, ood_arr])).size == 1:
        return [
            "every ID and OOD score is equal (a constant detector): the metrics are meaningless"
        ]
    for label, arr in (("ID", id_arr), ("OOD", ood_arr)):
        distinct = np.unique(arr).size
        if arr.size >= 2 and distinct < 2:
            reasons.append(f"all {arr.size} {label} scores are equal")
        elif arr.size < 2:
            reasons.append(f"the {label} set has {arr.size} score(s)")
    return reasons


def warn_if_degenerate(id_scores: Any, ood_scores: Any, what: str = "") -> bool:
    """Warn (``DegenerateResultWarning``) when :func:`degenerate_reasons` finds any; say if so."""
    import warnings

    from shapeood.errors import DegenerateResultWarning

    reasons = degenerate_reasons(id_scores, ood_scores)
    if reasons:
        where = f"{what}: " if what else ""
        warnings.warn(f"{where}{'; '.join(reasons)}", DegenerateResultWarning, stacklevel=3)
    return bool(reasons)


def accuracy(pred: Any, labels: Any, labelled_only: bool = False) -> float:
    """Fraction of ``pred == labels`` (both 1-D, same length).

    ``labelled_only``: count only rows with a label >= 0 (OOD and unlabelled rows carry -1);
    a ``ValueError`` when there is none.

    >>> accuracy([0, 1, 2, 2], [0, 1, 1, -1], labelled_only=True)
    0.6666666666666666
    """
    pred_arr = _as_label_array(pred, "pred")
    label_arr = _as_label_array(labels, "labels")
    if pred_arr.shape != label_arr.shape:
        raise ValueError(
            f"pred and labels must have the same length, got {pred_arr.size} and {label_arr.size}"
        )
    if labelled_only:
        known = label_arr >= 0
        if not known.any():
            raise ValueError("no labelled rows (all labels are -1): accuracy is undefined")
        pred_arr, label_arr = pred_arr[known], label_arr[known]
    return _float(np.mean(pred_arr == label_arr))


def _as_label_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class index per sample), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: pass at least one sample")
    return arr


# ----------------------------------------------------------------------------- FPR conventions


def _openood_fpr(id_ranks: np.ndarray, ood_ranks: np.ndarray, recall_level: float) -> float:
    scores, is_id = _labelled(id_ranks, ood_ranks)
    fpr, tpr, _ = _curves.roc_curve(1 - is_id, -scores)
    return _float(fpr[np.argmax(tpr >= recall_level)])


def _classic_fpr(id_ranks: np.ndarray, ood_ranks: np.ndarray, recall_level: float) -> float:
    threshold = np.sort(id_ranks)[round(_tail_fraction(recall_level) * id_ranks.size)]
    return _float(np.sum(ood_ranks > threshold) / float(ood_ranks.size))


def _nearest_fpr(id_ranks: np.ndarray, ood_ranks: np.ndarray, recall_level: float) -> float:
    """FPR at the ROC point (ID positive) whose recall is nearest ``recall_level``.

    Points are taken at each distinct score, descending; the first of equally near points wins
    (order: recall 1 down to the lowest, then a final recall 1 with no false positives).
    """
    scores, is_id = _labelled(id_ranks, ood_ranks)
    order = np.argsort(scores, kind="mergesort")[::-1]
    sorted_scores, sorted_is_id = scores[order], is_id[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tps = np.cumsum(sorted_is_id, dtype=np.float64)[last_of_value]
    fps = 1 + last_of_value - tps
    recall = tps / tps[-1]
    last = int(tps.searchsorted(tps[-1]))
    recall = np.r_[recall[last::-1], 1.0]
    fps = np.r_[fps[last::-1], 0.0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return _float(fps[cutoff] / float(ood_ranks.size))


# ----------------------------------------------------------------------------- metric suites


def openood_metrics(id_scores: Any, ood_scores: Any) -> dict[str, float]:
    """OpenOOD v1.5 ``compute_all_metrics``: fpr95, auroc, aupr_in, aupr_out (OOD positive)."""
    id_ranks, ood_ranks = _joint_ranks(id_scores, ood_scores)
    scores, is_id = _labelled(id_ranks, ood_ranks)
    fpr, tpr, _ = _curves.roc_curve(1 - is_id, -scores)
    return {
        "fpr95": _float(fpr[np.argmax(tpr >= RECALL_LEVEL)]),
        "auroc": _float(_curves.auc(fpr, tpr)),
        "aupr_in": _pr_area(is_id, scores, average_precision=False),
        "aupr_out": _pr_area(1 - is_id, -scores, average_precision=False),
    }


def nearest_metrics(id_scores: Any, ood_scores: Any) -> dict[str, float]:
    """HIMPLoS / DICE ``get_measures`` (ID positive): fpr95 at the nearest-recall ROC point,
    auroc = ``roc_auc_score``, aupr_in / aupr_out = average precision."""
    id_ranks, ood_ranks = _joint_ranks(id_scores, ood_scores)
    scores, is_id = _labelled(id_ranks, ood_ranks)
    return {
        "fpr95": _nearest_fpr(id_ranks, ood_ranks, RECALL_LEVEL),
        "auroc": _float(_curves.roc_auc(is_id, scores)),
        "aupr_in": _pr_area(is_id, scores, average_precision=True),
        "aupr_out": _pr_area(1 - is_id, -scores, average_precision=True),
    }


def classic_metrics(id_scores: Any, ood_scores: Any) -> dict[str, float]:
    """ReAct / ASH / LHAct ``cal_metric`` (ID positive): fpr95, auroc, aupr_in (AUIN),
    aupr_out (AUOUT) and detection_error, from their tie-collapsing curve.

    With ``tp[l]``, ``fp[l]`` the ID / OOD scores still above the ``l``-th cut of the merged
    ascending ranking (ties collapsed onto the end of their block), ``tpr = [1, tp/tp0, 0]``:
    AUROC = trapezoid of ``1 - fpr`` over ``tpr``; AUIN = trapezoid of ``tp / (tp + fp)`` over
    ``tpr`` (with 0.5 and 0 at the ends); AUOUT likewise for the rejected side;
    detection error = ``min((tp0 - tp + fp) / (tp0 + fp0))``.
    """
    id_ranks, ood_ranks = _joint_ranks(id_scores, ood_scores)
    tp, fp = _collapsed_counts(id_ranks, ood_ranks)
    tpr = np.concatenate([[1.0], tp / tp[0], [0.0]])
    fpr = np.concatenate([[1.0], fp / fp[0], [0.0]])

    denom_in = tp + fp
    denom_in[denom_in == 0.0] = -1.0
    keep_in = np.concatenate([[True], denom_in > 0.0, [True]])
    precision_in = np.concatenate([[0.5], tp / denom_in, [0.0]])

    denom_out = tp[0] - tp + fp[0] - fp
    denom_out[denom_out == 0.0] = -1.0
    keep_out = np.concatenate([[True], denom_out > 0.0, [True]])
    precision_out = np.concatenate([[0.0], (fp[0] - fp) / denom_out, [0.5]])

    return {
        "fpr95": _classic_fpr(id_ranks, ood_ranks, RECALL_LEVEL),
        "auroc": _float(-_trapezoid(1.0 - fpr, tpr)),
        "aupr_in": _float(-_trapezoid(precision_in[keep_in], tpr[keep_in])),
        "aupr_out": _float(_trapezoid(precision_out[keep_out], 1.0 - fpr[keep_out])),
        "detection_error": _float(((tp[0] - tp + fp) / (tp[0] + fp[0])).min()),
    }


def _collapsed_counts(id_ranks: np.ndarray, ood_ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``tp[l]``, ``fp[l]`` (length N+1, float64) of the ReAct/ASH merged ranking.

    Scores are merged ascending, ID before OOD on equal values; ``tp[l]`` / ``fp[l]`` count the
    ID / OOD scores not yet passed after ``l`` steps. Inside a block of equal scores every step
    takes the counts of the step after the block, so a tie enters the curve as one jump.
    """
    values = np.concatenate([id_ranks, ood_ranks])
    is_ood = np.concatenate([np.zeros(id_ranks.size, bool), np.ones(ood_ranks.size, bool)])
    order = np.lexsort((is_ood, values))
    merged_values, merged_is_ood = values[order], is_ood[order]
    tp = id_ranks.size - np.concatenate([[0], np.cumsum(~merged_is_ood)]).astype(np.float64)
    fp = ood_ranks.size - np.concatenate([[0], np.cumsum(merged_is_ood)]).astype(np.float64)

    new_value = np.diff(merged_values) != 0
    block_of = np.concatenate([[0], np.cumsum(new_value)])
    block_last = np.concatenate([np.flatnonzero(new_value), [merged_values.size - 1]])
    inside = np.concatenate([[False], ~new_value])  # step j > 0 with value equal to step j - 1
    after_block = block_last[block_of[inside]] + 1
    tp_collapsed, fp_collapsed = tp.copy(), fp.copy()
    tp_collapsed[np.flatnonzero(inside)] = tp[after_block]
    fp_collapsed[np.flatnonzero(inside)] = fp[after_block]
    return tp_collapsed, fp_collapsed


_SUITES = {"openood": openood_metrics, "classic": classic_metrics, "nearest": nearest_metrics}


def ood_metrics(
    id_scores: Any,
    ood_scores: Any,
    convention: FprConvention = "openood",
    id_pred: Any = None,
    id_labels: Any = None,
) -> dict[str, Any]:
    """All OOD metrics of one ID/OOD pair, as the named convention's reference code reports them.

    Returns ``{"fpr95", "auroc", "aupr_in", "aupr_out", "convention"}`` plus ``"acc"`` (accuracy
    of ``id_pred`` against ``id_labels`` on the ID samples) when both are given. ``"openood"``:
    OpenOOD v1.5 (trapezoid AUPR); ``"classic"``: ReAct/ASH ``cal_metric`` (its own trapezoid,
    plus ``"detection_error"``); ``"nearest"``: HIMPLoS/DICE ``get_measures`` (average precision).
    """
    suite = _SUITES[_check_convention(convention)]
    result: dict[str, Any] = dict(suite(id_scores, ood_scores))
    if (id_pred is None) != (id_labels is None):
        raise ValueError("pass both id_pred and id_labels to get the accuracy, or neither")
    if id_pred is not None:
        n_pred, n_id = len(_as_label_array(id_pred, "id_pred")), len(id_scores)
        if n_pred != n_id:
            raise ValueError(
                f"id_pred has {n_pred} entries but id_scores has {n_id}: pass the predictions "
                "and labels of the ID samples only"
            )
        result["acc"] = accuracy(id_pred, id_labels)
    result["convention"] = convention
    return result


# ----------------------------------------------------------------------------- tables

TABLE_COLUMNS = ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT")
GROUP_ROWS = {"near": "nearood", "far": "farood"}


_FPR_BY_CONVENTION = {"openood": _openood_fpr, "classic": _classic_fpr, "nearest": _nearest_fpr}


def _table_row(id_scores: np.ndarray, ood: Any, conventions: Sequence[str]) -> list[float]:
    """FPR@95 under each of ``conventions``, AUROC, AUPR-In, AUPR-Out (percent), one ranking."""
    id_ranks, ood_ranks = _joint_ranks(id_scores, ood)
    warn_if_degenerate(id_ranks, ood_ranks)
    scores, is_id = _labelled(id_ranks, ood_ranks)
    fprs = [_FPR_BY_CONVENTION[c](id_ranks, ood_ranks, RECALL_LEVEL) for c in conventions]
    areas = [
        _rank_auroc(id_ranks, ood_ranks),
        _pr_area(is_id, scores, average_precision=False),
        _pr_area(1 - is_id, -scores, average_precision=False),
    ]
    return [100 * v for v in fprs[:1] + areas + fprs[1:]]


def ood_table(
    id_scores: Any,
    ood_scores: Mapping[str, Mapping[str, Any]],
    csid_scores: Mapping[str, Any] | None = None,
    convention: FprConvention = "openood",
    *,
    also_fpr_under: Sequence[FprConvention] = (),
) -> Any:
    """OpenOOD's table of one method: a row per OOD set, then the unweighted group means.

    ``ood_scores`` is ``{"near": {name: scores}, "far": {name: scores}}`` in table order. With
    ``csid_scores`` (``{name: scores}``, full-spectrum OOD as OpenOOD's ``eval_ood(fsood=True)``)
    the ID scores are ``id_scores`` followed by every csid set, concatenated. Returns a
    DataFrame indexed by set name with rows ``<near sets>, nearood, <far sets>, farood`` (a group
    without sets has no mean row) and columns ``FPR@95, AUROC, AUPR_IN, AUPR_OUT`` in percent,
    then ``FPR@95_<name>`` for each convention of ``also_fpr_under`` (one ranking per set).

    >>> import numpy as np
    >>> t = ood_table(np.array([3.0, 4.0]), {"near": {"a": np.array([1.0, 3.5])}, "far": {}})
    >>> float(t.loc["a", "AUROC"]), list(t.index)
    (75.0, ['a', 'nearood'])
    """
    import pandas as pd

    parts = [_as_1d_float64(id_scores, "id_scores")]
    parts += [_as_1d_float64(s, f"csid_scores[{n!r}]") for n, s in (csid_scores or {}).items()]
    id_all = np.concatenate(parts)
    unknown = sorted(set(ood_scores) - set(GROUP_ROWS))
    if unknown:
        raise ValueError(f"ood_scores groups must be 'near' and 'far', got {unknown}")
    conventions = [_check_convention(c) for c in (convention, *also_fpr_under)]
    rows: dict[str, list[float]] = {}
    for group, mean_row in GROUP_ROWS.items():
        sets = ood_scores.get(group) or {}
        members = [_table_row(id_all, scores, conventions) for scores in sets.values()]
        rows.update(zip(sets, members, strict=True))
        if members:
            rows[mean_row] = np.mean(members, axis=0).tolist()
    names = [*TABLE_COLUMNS, *(f"FPR@95_{c}" for c in also_fpr_under)]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=names)
    frame.index.name = "dataset"
    return frame
