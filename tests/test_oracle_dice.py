"""DICE detector against dice.npz (deeplearning-wisc/dice RouteDICE and OpenOOD)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import load_oracle, oracle_keys
from shapeood import LinearHead
from shapeood.detectors import DICE

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def oracle() -> dict[str, np.ndarray]:
    return load_oracle("dice")


def _head(o: dict[str, np.ndarray]) -> LinearHead:
    return LinearHead(o["fc_weight"], o["fc_bias"])


def _fitted(o: dict[str, np.ndarray], percentile: int = 90) -> DICE:
    return DICE(percentile=percentile).fit(_head(o), o["train_features"])


def check_key(key: str, o: dict[str, np.ndarray]) -> None:
    if key == "fc_weight":
        det = _fitted(o)
        np.testing.assert_array_equal(
            det.masked_head_.weight.numpy(), o["fc_weight"] * det.mask_.numpy()
        )
        return
    if key == "fc_bias":
        np.testing.assert_array_equal(_fitted(o).masked_head_.bias.numpy(), o["fc_bias"])
        return
    if key == "train_features":
        det = _fitted(o)
        mean = o["train_features"].mean(axis=0)
        np.testing.assert_allclose(det.mean_feature_.numpy(), mean, rtol=1e-6, atol=1e-7)
        given = DICE(mean_feature=mean).fit(_head(o))
        np.testing.assert_array_equal(given.mask_.numpy(), det.mask_.numpy())
        return
    if key == "test_features":
        det = _fitted(o)
        masked = o["fc_weight"] * det.mask_.numpy()
        expected = o["test_features"] @ masked.T + o["fc_bias"]
        np.testing.assert_allclose(
            det.logits(o["test_features"]).numpy(), expected, rtol=RTOL, atol=ATOL
        )
        return
    m = re.fullmatch(r"repo_(logits|energy|mask|threshold)_p(\d+)", key)
    if m:
        what, det = m.group(1), _fitted(o, int(m.group(2)))
        if what == "mask":
            np.testing.assert_array_equal(det.mask_.numpy(), o[key])
        elif what == "threshold":
            contribution = det.mean_feature_.numpy()[None, :] * o["fc_weight"]
            np.testing.assert_array_equal(det.mask_.numpy(), contribution > o[key])
        else:
            predict = det.logits if what == "logits" else det.score
            result = predict(o["test_features"])
            np.testing.assert_allclose(result.numpy(), o[key], rtol=RTOL, atol=ATOL)
        return
    m = re.fullmatch(r"openood_(pred|energy)_p(\d+)", key)
    if m:
        what, det = m.group(1), _fitted(o, int(m.group(2)))
        if what == "pred":
            np.testing.assert_array_equal(det.predict(o["test_features"]).numpy(), o[key])
        else:
            result = det.score(o["test_features"]).numpy()
            np.testing.assert_allclose(result, o[key], rtol=RTOL, atol=ATOL)
        return
    pytest.fail(f"dice.npz key {key!r} has no check: add one to test_oracle_dice.py")


@pytest.mark.parametrize("key", oracle_keys("dice"))
def test_dice_oracle(key: str, oracle: dict[str, np.ndarray]) -> None:
    check_key(key, oracle)


def test_unknown_key_fails(oracle: dict[str, np.ndarray]) -> None:
    with pytest.raises(pytest.fail.Exception):
        check_key("no_such_key", oracle)
