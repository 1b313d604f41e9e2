"""ReAct detector against react.npz (deeplearning-wisc/react network path and OpenOOD)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conftest import load_oracle, oracle_keys
from shapeood import LinearHead
from shapeood.detectors import ReAct, create_detector

RTOL, ATOL = 1e-5, 1e-6
REPO_THRESHOLDS = {"c1": 1.0, "noclip": 1e6}


@pytest.fixture(scope="module")
def oracle() -> dict[str, np.ndarray]:
    return load_oracle("react")


def _head(o: dict[str, np.ndarray]) -> LinearHead:
    return LinearHead(o["fc_weight"], o["fc_bias"])


def _close(actual: torch.Tensor, expected: np.ndarray, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(actual.numpy(), expected, rtol=rtol, atol=ATOL)


def _pooled(x4: np.ndarray) -> torch.Tensor:
    return torch.nn.AvgPool2d(7, stride=1)(torch.from_numpy(x4)).flatten(1)


def _fitted(o: dict[str, np.ndarray], percentile: int) -> ReAct:
    return ReAct(percentile=percentile).fit(_head(o), o["id_bank"])


def check_key(key: str, o: dict[str, np.ndarray]) -> None:
    if key in ("x4", "pooled_x4"):
        # The repo pools with AvgPool2d(7) before clipping; pooled_x4 is that feature.
        _close(_pooled(o["x4"]), o["pooled_x4"])
        return
    if key in ("fc_weight", "fc_bias"):
        # Without clipping the detector's logits are the plain head's.
        det = ReAct(threshold=1e6).fit(_head(o))
        _close(det.logits(o["pooled_x4"]), o["repo_logits_noclip"])
        assert o[key].shape[0] == det.head_.num_classes
        return
    if key == "id_bank":
        det = _fitted(o, int(o["openood_default_percentile"]))
        expected = np.percentile(o["id_bank"].ravel(), 90)
        assert det.threshold_ == pytest.approx(float(expected), rel=1e-6)
        return
    if key == "pooled_test":
        det = _fitted(o, 90)
        clipped = np.minimum(o["pooled_test"], det.threshold_)
        _close(det.logits(o["pooled_test"]), clipped @ o["fc_weight"].T + o["fc_bias"])
        return
    if key == "openood_default_percentile":
        assert ReAct().percentile == int(o[key])
        assert create_detector("react").get_params()["percentile"] == int(o[key])
        return
    m = re.fullmatch(r"repo_(logits|energy|msp)_(c1|noclip)", key)
    if m:
        what, tag = m.groups()
        score_fn = "msp" if what == "msp" else "energy"
        det = ReAct(threshold=REPO_THRESHOLDS[tag], score_fn=score_fn).fit(_head(o))
        # The detector takes the pooled feature, here also as the (N, D, 1, 1) pooling output.
        pooled = _pooled(o["x4"]).view(4, -1, 1, 1)
        result = det.logits(pooled) if what == "logits" else det.score(pooled)
        _close(result, o[key])
        return
    m = re.fullmatch(r"threshold_p(\d+)", key)
    if m:
        det = _fitted(o, int(m.group(1)))
        assert det.threshold_ == pytest.approx(float(o[key]), rel=1e-6)
        return
    m = re.fullmatch(r"openood_(pred|energy)_p(\d+)", key)
    if m:
        what, p = m.group(1), int(m.group(2))
        det = _fitted(o, p)
        if what == "pred":
            np.testing.assert_array_equal(det.predict(o["pooled_test"]).numpy(), o[key])
        else:
            _close(det.score(o["pooled_test"]), o[key])
        return
    pytest.fail(f"react.npz key {key!r} has no check: add one to test_oracle_react.py")


@pytest.mark.parametrize("key", oracle_keys("react"))
def test_react_oracle(key: str, oracle: dict[str, np.ndarray]) -> None:
    check_key(key, oracle)


def test_unknown_key_fails(oracle: dict[str, np.ndarray]) -> None:
    with pytest.raises(pytest.fail.Exception):
        check_key("no_such_key", oracle)
