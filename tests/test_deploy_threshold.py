"""The deploy threshold rule: k = ceil(target_tpr * n), threshold = k-th largest ID score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shapeood.deploy import accepted_rate, fit_threshold
from shapeood.deploy.threshold import accepted_count


def test_distinct_scores_accept_exactly_k():
    scores = np.arange(20, dtype=np.float32)  # 0..19
    t = fit_threshold(scores, 0.95)  # k = 19: the 19th largest is 1
    assert t == 1.0
    assert accepted_rate(scores, t) == 0.95


def test_ties_at_the_threshold_are_all_accepted():
    scores = np.array([1, 2, 2, 2, 3], dtype=np.float32)
    t = fit_threshold(scores, 0.5)  # k = ceil(2.5) = 3; sorted desc 3, 2, 2, 2, 1 -> 2
    assert t == 2.0
    assert accepted_rate(scores, t) == 0.8  # the tie is never split


def test_k_rounding_and_extremes():
    assert accepted_count(1000, 0.95) == 950  # not 951 from float noise
    assert accepted_count(1001, 0.95) == math.ceil(950.95)
    assert accepted_count(3, 0.01) == 1
    scores = np.array([5.0, -1.0, 3.0])
    assert fit_threshold(scores, 1.0) == -1.0
    assert fit_threshold(scores, 0.01) == 5.0


@pytest.mark.parametrize("seed", range(5))
def test_rule_is_the_largest_threshold_accepting_k(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=int(rng.integers(1, 60))).astype(np.float32)  # many ties
    tpr = float(rng.uniform(0.05, 1.0))
    t = fit_threshold(scores, tpr)
    k = accepted_count(scores.size, tpr)
    assert t in scores
    assert (scores >= t).sum() >= k >= tpr * scores.size - 1e-9
    larger = scores[scores > t]
    if larger.size:  # any larger candidate accepts fewer than k
        assert (scores >= larger.min()).sum() < k
    assert accepted_rate(scores, t) >= tpr - 1e-12


@pytest.mark.parametrize("bad", [0, -0.1, 1.5e3, "x", float("nan")])
def test_bad_target_tpr(bad):
    with pytest.raises(ValueError, match="target_tpr"):
        fit_threshold(np.ones(4), bad)


def test_percent_value_gets_a_hint():
    with pytest.raises(ValueError, match=r"did you mean 0\.95"):
        fit_threshold(np.ones(4), 95)


def test_non_finite_or_empty_scores():
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_threshold(np.array([1.0, np.nan]), 0.9)
    with pytest.raises(ValueError, match="no ID scores"):
        fit_threshold(np.array([]), 0.9)
