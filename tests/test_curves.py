"""shapeood._curves against scikit-learn (a test-only dependency), value for value."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from shapeood import _curves


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    cases = []
    for n in (2, 3, 7, 50, 1000):
        labels = rng.integers(0, 2, n)
        labels[0], labels[-1] = 0, 1  # both classes present
        cases.append((f"normal-{n}", labels, rng.normal(size=n)))
        cases.append((f"ties-{n}", labels, rng.integers(0, 4, n).astype(np.float64)))
        cases.append((f"fewvalues-{n}", labels, rng.choice([-1e30, 0.0, 1e-30, 1e30], n)))
    labels = rng.integers(0, 2, 500)
    labels[:2] = [0, 1]
    cases.append(("equal", labels, np.full(500, 3.25)))
    cases.append(("huge", labels, rng.choice([-1e30, 1e30], 500) * rng.uniform(1, 2, 500)))
    cases.append(("one-each", np.array([1, 0]), np.array([0.3, 0.7])))
    cases.append(("one-each-tied", np.array([0, 1]), np.array([0.5, 0.5])))
    cases.append(("one-id-many-ood", np.r_[1, np.zeros(40, int)], rng.normal(size=41)))
    cases.append(("separable", np.r_[np.ones(30, int), np.zeros(20, int)], np.arange(50.0)[::-1]))
    cases.append(("steps", np.tile([1, 0], 200), np.repeat(np.arange(100.0), 4)))
    cases.append(("collinear", np.r_[np.ones(20, int), np.zeros(20, int)], np.arange(40.0)))
    big = rng.integers(0, 2, 20000)
    cases.append(("big-ties", big, np.round(rng.normal(size=20000), 1)))
    return cases


CASES = _cases()
DTYPES = (np.float64, np.float32)


def _same(ours, theirs) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "labels", "scores"), CASES, ids=[c[0] for c in CASES])
def test_curves_equal_sklearn(name, labels, scores, dtype):
    scores = scores.astype(dtype)
    for positive, s in ((labels, scores), (1 - labels, -scores)):
        for drop in (True, False):
            ours = _curves.roc_curve(positive, s, drop_intermediate=drop)
            theirs = skm.roc_curve(positive, s, drop_intermediate=drop)
            for a, b in zip(ours, theirs, strict=True):
                _same(a, b)
        ours = _curves.precision_recall_curve(positive, s)
        theirs = skm.precision_recall_curve(positive, s)
        for a, b in zip(ours, theirs, strict=True):
            _same(a, b)
        fpr, tpr, _ = skm.roc_curve(positive, s)
        assert _curves.auc(fpr, tpr) == skm.auc(fpr, tpr)
        precision, recall, _ = theirs
        assert _curves.auc(recall, precision) == skm.auc(recall, precision)
        assert _curves.average_precision(positive, s) == skm.average_precision_score(positive, s)
        assert _curves.roc_auc(positive, s) == skm.roc_auc_score(positive, s)


def test_fpr95_point_moves_with_dropping():
    """ROC points (0, .9), (.1, .95), (.2, 1) are collinear: dropping the middle one moves the
    first point with TPR >= 0.95 from FPR 0.1 to 0.2, as in scikit-learn."""
    conf = np.r_[1.0, 2.0, [3.0] * 8, [0.0] * 18, 1.0, 2.0]
    is_ood = np.r_[np.zeros(10, int), np.ones(20, int)]
    first = []
    for drop in (False, True):
        fpr, tpr, _ = _curves.roc_curve(is_ood, -conf, drop_intermediate=drop)
        ref_fpr, ref_tpr, _ = skm.roc_curve(is_ood, -conf, drop_intermediate=drop)
        _same(fpr, ref_fpr)
        _same(tpr, ref_tpr)
        first.append(float(fpr[np.argmax(tpr >= 0.95)]))
    assert first == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_auc_direction_and_dtype(dtype):
    rng = np.random.default_rng(1)
    x = np.sort(rng.integers(0, 10, 30)).astype(dtype)
    y = rng.integers(0, 10, 30).astype(dtype)
    for xs, ys in ((x, y), (x[::-1], y[::-1])):
        ours, theirs = _curves.auc(xs, ys), skm.auc(xs, ys)
        assert type(ours) is float
        assert ours == theirs


def test_auc_errors():
    with pytest.raises(ValueError, match="neither increasing nor decreasing"):
        _curves.auc([0.0, 1.0, 0.5], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least 2 points"):
        _curves.auc([0.0], [1.0])


def test_one_class_and_bad_inputs():
    assert np.isnan(_curves.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.warns(UserWarning):  # sklearn warns; we only compare the values
        expected = skm.roc_curve([1, 1, 1], [0.1, 0.2, 0.3])
    ours = _curves.roc_curve([1, 1, 1], [0.1, 0.2, 0.3])
    for a, b in zip(ours, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="NaN"):
        _curves.roc_curve([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="same length"):
        _curves.precision_recall_curve([0, 1, 1], [0.1, 0.2])
