"""Every array of oracle/metrics.npz reproduced by shapeood.metrics (one test per key)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_oracle, oracle_keys
from shapeood import metrics

ORACLE = "metrics"
TOLERANCE = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(scope="module")
def oracle() -> dict[str, np.ndarray]:
    return load_oracle(ORACLE)


def _split(key: str) -> tuple[str, str]:
    case, _, kind = key.rpartition("_")
    return case, kind


def _inputs(oracle: dict[str, np.ndarray], case: str) -> tuple[np.ndarray, np.ndarray]:
    return oracle[f"{case}_id"], oracle[f"{case}_ood"]


def _check_openood(oracle, case):
    id_scores, ood_scores = _inputs(oracle, case)
    n_id = id_scores.size
    got = metrics.ood_metrics(
        id_scores,
        ood_scores,
        convention="openood",
        id_pred=oracle[f"{case}_pred"][:n_id],
        id_labels=oracle[f"{case}_label"][:n_id],
    )
    assert got["convention"] == "openood"
    values = [got[k] for k in ("fpr95", "auroc", "aupr_in", "aupr_out", "acc")]
    np.testing.assert_allclose(values, oracle[f"{case}_openood"], **TOLERANCE)
    # the single-metric functions agree with the suite
    single = [
        metrics.fpr_at_95(id_scores, ood_scores, convention="openood"),
        metrics.auroc(id_scores, ood_scores),
        metrics.aupr_in(id_scores, ood_scores),
        metrics.aupr_out(id_scores, ood_scores),
    ]
    np.testing.assert_allclose(single, oracle[f"{case}_openood"][:4], **TOLERANCE)


def _check_reactash(oracle, case):
    id_scores, ood_scores = _inputs(oracle, case)
    got = metrics.classic_metrics(id_scores, ood_scores)
    values = [got[k] for k in ("fpr95", "auroc", "aupr_in", "aupr_out", "detection_error")]
    np.testing.assert_allclose(values, oracle[f"{case}_reactash"], **TOLERANCE)
    suite = metrics.ood_metrics(id_scores, ood_scores, convention="classic")
    assert suite["convention"] == "classic"
    np.testing.assert_allclose(suite["aupr_in"], got["aupr_in"], **TOLERANCE)
    np.testing.assert_allclose(
        metrics.fpr_at_95(id_scores, ood_scores, convention="classic"),
        oracle[f"{case}_reactash"][0],
        **TOLERANCE,
    )


def _check_himplos(oracle, case):
    id_scores, ood_scores = _inputs(oracle, case)
    got = metrics.ood_metrics(id_scores, ood_scores, convention="nearest")
    assert got["convention"] == "nearest"
    values = [got[k] for k in ("fpr95", "auroc", "aupr_in", "aupr_out")]
    np.testing.assert_allclose(values, oracle[f"{case}_himplos"], **TOLERANCE)
    single = [
        metrics.fpr_at_95(id_scores, ood_scores, convention="nearest"),
        metrics.auroc(id_scores, ood_scores),
        metrics.aupr_in(id_scores, ood_scores, average_precision=True),
        metrics.aupr_out(id_scores, ood_scores, average_precision=True),
    ]
    np.testing.assert_allclose(single, oracle[f"{case}_himplos"], **TOLERANCE)


def _check_input(oracle, case, kind):
    """Inputs: the label/pred layout the expected values rely on (ID rows first, OOD = -1)."""
    id_scores, ood_scores = _inputs(oracle, case)
    n_id, n_ood = id_scores.size, ood_scores.size
    array = oracle[f"{case}_{kind}"]
    assert array.ndim == 1
    if kind in ("id", "ood"):
        assert np.isfinite(array).all()
        return
    assert array.size == n_id + n_ood
    if kind == "label":
        assert (array[:n_id] >= 0).all() and (array[n_id:] == -1).all()
        assert metrics.accuracy(array[:n_id], array[:n_id]) == 1.0


CHECKS = {"openood": _check_openood, "reactash": _check_reactash, "himplos": _check_himplos}


@pytest.mark.parametrize("key", oracle_keys(ORACLE))
def test_oracle_key(oracle, key):
    if key == "case_names":
        prefixes = {_split(k)[0] for k in oracle if k != "case_names"}
        assert set(oracle["case_names"].tolist()) == prefixes
        return
    case, kind = _split(key)
    assert case in oracle["case_names"].tolist(), f"key {key!r} belongs to no known case"
    if kind in CHECKS:
        CHECKS[kind](oracle, case)
    elif kind in ("id", "ood", "label", "pred"):
        _check_input(oracle, case, kind)
    else:
        pytest.fail(f"oracle key {key!r} has no check: add one to tests/test_oracle_metrics.py")
