"""shapeood.metrics against scikit-learn on seeded random cases (ties, constants, huge and tiny
magnitudes, unequal sizes, swapped roles) and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from shapeood import metrics


def _case(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_id, n_ood = int(rng.integers(1, 400)), int(rng.integers(1, 400))
    id_scores = rng.normal(1.0, 1.0, n_id)
    ood_scores = rng.normal(0.0, 1.3, n_ood)
    if kind == "continuous":
        return id_scores, ood_scores
    if kind == "rounded":  # many ID/OOD ties
        return np.round(id_scores, 1), np.round(ood_scores, 1)
    if kind == "integer":  # a handful of values, huge tie blocks
        return rng.integers(0, 6, n_id).astype(float), rng.integers(0, 4, n_ood).astype(float)
    if kind == "huge":
        return id_scores * 1e30, ood_scores * 1e30
    if kind == "tiny_spread":
        return 1e-30 * np.round(id_scores, 1), 1e-30 * np.round(ood_scores, 1)
    if kind == "mixed":  # huge and tiny magnitudes in one set
        id_mixed = np.where(rng.random(n_id) < 0.5, id_scores * 1e30, id_scores * 1e-30)
        ood_mixed = np.where(rng.random(n_ood) < 0.5, ood_scores * 1e30, ood_scores * 1e-30)
        return id_mixed, ood_mixed
    if kind == "unequal":
        return id_scores[:3], np.round(rng.normal(0.5, 1.0, 1000), 1)
    raise AssertionError(kind)


KINDS = ["continuous", "rounded", "integer", "huge", "tiny_spread", "mixed", "unequal"]
CASES = [(kind, seed) for kind in KINDS for seed in range(6)]


def _labelled(id_scores, ood_scores):
    scores = np.concatenate([id_scores, ood_scores])
    is_id = np.r_[np.ones(len(id_scores), int), np.zeros(len(ood_scores), int)]
    return scores, is_id


def _nearest_fpr_reference(id_scores, ood_scores, level=0.95):
    """ROC (ID positive, every distinct threshold), from the first point with recall 1 back to
    the first threshold; the point with recall nearest ``level`` (first in that order)."""
    scores, is_id = _labelled(id_scores, ood_scores)
    fpr, tpr, _ = skm.roc_curve(is_id, scores, drop_intermediate=False)
    fpr, tpr = fpr[1:], tpr[1:]  # drop the artificial (0, 0) point at threshold +inf
    full = int(np.argmax(tpr == 1.0))
    fpr, tpr = fpr[: full + 1][::-1], tpr[: full + 1][::-1]
    return fpr[np.argmin(np.abs(tpr - level))]


def _classic_fpr_reference(id_scores, ood_scores):
    """Fraction of OOD scores above the ID score that leaves round(5% of N) ID scores below."""
    ordered = sorted(id_scores.tolist())
    threshold = ordered[round(0.05 * len(ordered))]
    return sum(1 for s in ood_scores.tolist() if s > threshold) / len(ood_scores)


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_against_sklearn(kind, seed):
    id_scores, ood_scores = _case(kind, seed)
    scores, is_id = _labelled(id_scores, ood_scores)
    close = {"rtol": 1e-12, "atol": 1e-12}

    np.testing.assert_allclose(
        metrics.auroc(id_scores, ood_scores), skm.roc_auc_score(is_id, scores), **close
    )
    np.testing.assert_allclose(
        metrics.aupr_in(id_scores, ood_scores, average_precision=True),
        skm.average_precision_score(is_id, scores),
        **close,
    )
    np.testing.assert_allclose(
        metrics.aupr_out(id_scores, ood_scores, average_precision=True),
        skm.average_precision_score(1 - is_id, -scores),
        **close,
    )
    precision, recall, _ = skm.precision_recall_curve(is_id, scores)
    np.testing.assert_allclose(
        metrics.aupr_in(id_scores, ood_scores), skm.auc(recall, precision), **close
    )
    precision, recall, _ = skm.precision_recall_curve(1 - is_id, -scores)
    np.testing.assert_allclose(
        metrics.aupr_out(id_scores, ood_scores), skm.auc(recall, precision), **close
    )

    fpr, tpr, _ = skm.roc_curve(1 - is_id, -scores)
    assert metrics.fpr_at_95(id_scores, ood_scores) == fpr[np.argmax(tpr >= 0.95)]
    assert metrics.fpr_at_95(id_scores, ood_scores, "nearest") == _nearest_fpr_reference(
        id_scores, ood_scores
    )
    assert metrics.fpr_at_95(id_scores, ood_scores, "classic") == _classic_fpr_reference(
        id_scores, ood_scores
    )

    # the ReAct/ASH curve has the same area as the ROC
    classic = metrics.classic_metrics(id_scores, ood_scores)
    np.testing.assert_allclose(classic["auroc"], skm.roc_auc_score(is_id, scores), atol=1e-12)
    for suite in ("openood", "classic", "nearest"):
        values = metrics.ood_metrics(id_scores, ood_scores, convention=suite)
        for key in ("fpr95", "auroc", "aupr_in", "aupr_out"):
            assert isinstance(values[key], float)
            assert 0.0 <= values[key] <= 1.0, (suite, key, values[key])


@pytest.mark.parametrize("seed", range(4))
def test_swapped_roles_and_monotone_invariance(seed):
    id_scores, ood_scores = _case("rounded", seed)
    auroc = metrics.auroc(id_scores, ood_scores)
    assert metrics.auroc(ood_scores, id_scores) == pytest.approx(1.0 - auroc, abs=1e-12)
    # OOD-positive on -conf is ID-positive on the negated, swapped sets
    assert metrics.aupr_out(id_scores, ood_scores) == pytest.approx(
        metrics.aupr_in(-ood_scores, -id_scores), abs=1e-12
    )
    # every metric depends on the order only
    for convention in metrics.CONVENTIONS:
        plain = metrics.ood_metrics(id_scores, ood_scores, convention=convention)
        warped = metrics.ood_metrics(
            np.exp(id_scores) * 1e20, np.exp(ood_scores) * 1e20, convention=convention
        )
        assert plain == warped


def test_constant_scores():
    id_scores, ood_scores = np.full(50, 3.0), np.full(70, 3.0)
    assert metrics.auroc(id_scores, ood_scores) == 0.5
    assert metrics.fpr_at_95(id_scores, ood_scores, "openood") == 1.0
    assert metrics.fpr_at_95(id_scores, ood_scores, "nearest") == 1.0
    assert metrics.fpr_at_95(id_scores, ood_scores, "classic") == 0.0  # strict ">" threshold
    assert metrics.classic_metrics(id_scores, ood_scores)["auroc"] == 0.5
    assert metrics.aupr_in(id_scores, ood_scores, average_precision=True) == pytest.approx(50 / 120)


def test_perfect_and_reversed_separation():
    id_scores, ood_scores = np.arange(10.0, 20.0), np.arange(0.0, 5.0)
    for convention in metrics.CONVENTIONS:
        good = metrics.ood_metrics(id_scores, ood_scores, convention=convention)
        assert good["auroc"] == 1.0 and good["fpr95"] == 0.0
        bad = metrics.ood_metrics(ood_scores, id_scores, convention=convention)
        assert bad["auroc"] == 0.0 and bad["fpr95"] == 1.0
        assert str(bad["auroc"]) == "0.0"  # never -0.0


def test_classic_threshold_rounds_half_to_even():
    # N=10: round(0.5) = 0 -> the lowest ID score; N=30: round(1.5) = 2; N=50: round(2.5) = 2
    for n_id, cut in ((10, 0), (30, 2), (50, 2)):
        id_scores = np.arange(n_id, dtype=float)
        ood_scores = np.arange(n_id, dtype=float) - 0.5  # one OOD score just below each ID score
        expected = (n_id - (cut + 1)) / n_id  # OOD scores above id[cut]
        assert metrics.fpr_at_95(id_scores, ood_scores, "classic") == expected


def test_openood_fpr_follows_roc_curve_point_dropping():
    # OOD positive on -conf: ROC points (0, .9), (.1, .95), (.2, 1.0) are collinear with equal
    # steps, so sklearn's roc_curve (as OpenOOD calls it) drops the middle one: FPR = 0.2.
    id_scores = np.array([1.0, 2.0] + [3.0] * 8)
    ood_scores = np.array([0.0] * 18 + [1.0, 2.0])
    assert metrics.fpr_at_95(id_scores, ood_scores, "openood") == pytest.approx(0.2)


def test_hand_computed_tiny_case():
    id_scores, ood_scores = [3, 2, 2, 1], [2, 1, 1, 0]
    assert metrics.fpr_at_95(id_scores, ood_scores, "openood") == 0.75
    assert metrics.fpr_at_95(id_scores, ood_scores, "classic") == 0.25
    assert metrics.fpr_at_95(id_scores, ood_scores, "nearest") == 0.75
    # P(id > ood) + 0.5 P(tie) = (11 + 0.5 * 4) / 16
    assert metrics.auroc(id_scores, ood_scores) == 13 / 16


def test_tensor_inputs_of_any_dtype():
    rng = np.random.default_rng(3)
    id_np, ood_np = rng.normal(1, 1, 64), rng.normal(0, 1, 48)
    expected = metrics.ood_metrics(id_np.astype(np.float32), ood_np.astype(np.float32))
    got = metrics.ood_metrics(
        torch.tensor(id_np, dtype=torch.float32, requires_grad=True),
        torch.tensor(ood_np, dtype=torch.float32),
    )
    assert got == expected
    half = metrics.auroc(torch.tensor(id_np).half(), torch.tensor(ood_np).bfloat16())
    assert 0.0 <= half <= 1.0


def test_infinite_scores_keep_their_order():
    assert metrics.auroc([np.inf, 1.0], [-np.inf, 0.5]) == 1.0
    assert metrics.fpr_at_95([np.inf] * 5, [1e300] * 5, "classic") == 0.0


def test_accuracy_and_ood_metrics_acc():
    assert metrics.accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert metrics.accuracy(torch.tensor([0, 1]), np.array([0, 1])) == 1.0
    out = metrics.ood_metrics([3.0, 2.0], [1.0], id_pred=[0, 1], id_labels=[0, 0])
    assert out["acc"] == 0.5 and out["convention"] == "openood"
    assert "acc" not in metrics.ood_metrics([3.0, 2.0], [1.0])


@pytest.mark.parametrize(
    ("id_scores", "ood_scores", "message"),
    [
        ([], [1.0], "id_scores is empty"),
        ([1.0], np.array([]), "ood_scores is empty"),
        ([1.0, np.nan], [0.0], "NaN"),
        ([1.0], [0.0, float("nan")], "NaN"),
        (np.ones((3, 2)), [0.0], "1-D"),
        (1.0, [0.0], "1-D"),
        (["a", "b"], [0.0], "1-D array of numbers"),
    ],
)
def test_bad_scores_raise(id_scores, ood_scores, message):
    for call in (
        lambda: metrics.auroc(id_scores, ood_scores),
        lambda: metrics.fpr_at_95(id_scores, ood_scores, "classic"),
        lambda: metrics.ood_metrics(id_scores, ood_scores, convention="nearest"),
    ):
        with pytest.raises(ValueError, match=message):
            call()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown FPR convention"):
        metrics.fpr_at_95([1.0], [0.0], convention="hendrycks")
    with pytest.raises(ValueError, match="unknown FPR convention"):
        metrics.ood_metrics([1.0], [0.0], convention="OpenOOD")
    with pytest.raises(ValueError, match="both id_pred and id_labels"):
        metrics.ood_metrics([1.0], [0.0], id_pred=[1])
    with pytest.raises(ValueError, match="ID samples only"):
        metrics.ood_metrics([1.0, 2.0], [0.0], id_pred=[1, 2, 3], id_labels=[1, 2, 3])
    with pytest.raises(ValueError, match="same length"):
        metrics.accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="recall_level"):
        metrics.fpr_at_95([1.0], [0.0], convention="classic", recall_level=1.5)
