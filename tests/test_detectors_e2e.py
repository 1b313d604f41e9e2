"""ASH, SCALE and LHAct detectors end to end against the reference logits and scores.

ash_scale.npz: fc(shaped x1) with the andrijazz/ash functions and the OpenOOD postprocessors;
lhact.npz: the ystyuan/LHAct network path. (The shaping functions themselves are checked
key by key in the shaping tests.)
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_oracle
from shapeood import LinearHead
from shapeood.detectors import create_detector

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def ash() -> dict[str, np.ndarray]:
    return load_oracle("ash_scale")


@pytest.fixture(scope="module")
def lhact() -> dict[str, np.ndarray]:
    return load_oracle("lhact")


def _close(actual, expected: np.ndarray) -> None:
    """rtol 1e-5; the absolute floor follows the magnitude (ASH-S/SCALE logits reach ~20 and
    cancel to small values, so float32 summation order shows at 1e-6 of the largest logit)."""
    atol = max(ATOL, RTOL * float(np.abs(expected).max()))
    np.testing.assert_allclose(actual.numpy(), expected, rtol=RTOL, atol=atol)


@pytest.mark.parametrize(
    ("tag", "name", "percentile"),
    [("ash_p_p60", "ash_p", 60), ("ash_b_p65", "ash_b", 65), ("ash_s_p90", "ash_s", 90)],
)
def test_ash_end_to_end(ash, tag: str, name: str, percentile: int) -> None:
    head = LinearHead(ash["fc_weight"], ash["fc_bias"])
    det = create_detector(name, percentile=percentile).fit(head)
    x1 = ash["x1"]  # (8, 2048, 1, 1): the pooled feature as the repos pass it
    _close(det.logits(x1), ash[f"e2e_logits_{tag}"])
    _close(det.score(x1), ash[f"e2e_energy_{tag}"])
    msp = create_detector(name, percentile=percentile, score_fn="msp").fit(head)
    _close(msp.score(x1), ash[f"e2e_msp_{tag}"])


def test_plain_scores_end_to_end(ash) -> None:
    head = LinearHead(ash["fc_weight"], ash["fc_bias"])
    _close(create_detector("energy").fit(head).logits(ash["x1"]), ash["e2e_logits_none"])
    _close(create_detector("energy").fit(head).score(ash["x1"]), ash["e2e_energy_none"])
    _close(create_detector("msp").fit(head).score(ash["x1"]), ash["e2e_msp_none"])


def test_scale_end_to_end(ash) -> None:
    head = LinearHead(ash["fc_weight"], ash["fc_bias"])
    det = create_detector("scale").fit(head)
    assert det.percentile == int(ash["openood_scale_default_percentile"])
    _close(det.logits(ash["x1"]), ash["e2e_logits_scale_p85"])
    _close(det.score(ash["x1"]), ash["e2e_energy_scale_p85"])
    pooled = ash["x1"].reshape(8, -1)
    _close(det.score(pooled), ash["openood_scale_energy_p85"])
    np.testing.assert_array_equal(det.predict(pooled).numpy(), ash["openood_scale_pred_p85"])


def test_openood_ash_is_ash_b_at_90(ash) -> None:
    head = LinearHead(ash["fc_weight"], ash["fc_bias"])
    det = create_detector("ash", preset="openood").fit(head)
    assert det.name == "ash_b" and det.percentile == int(ash["openood_ash_default_percentile"])
    pooled = ash["x1"].reshape(8, -1)
    _close(det.score(pooled), ash["openood_ash_energy_p90"])
    np.testing.assert_array_equal(det.predict(pooled).numpy(), ash["openood_ash_pred_p90"])


@pytest.mark.parametrize("tag", ["default", "th1_tl0.1"])
def test_lhact_end_to_end(lhact, tag: str) -> None:
    head = LinearHead(lhact["fc_weight"], lhact["fc_bias"])
    th, tl = float(lhact[f"th_{tag}"]), float(lhact[f"tl_{tag}"])
    params = {} if tag == "default" else {"th": th, "tl": tl}
    det = create_detector("lhact", **params).fit(head)
    assert (det.th_, det.tl_) == (th, tl)
    x = lhact["x_pooled"]
    _close(det.logits(x), lhact[f"logits_{tag}"])
    _close(det.score(x), lhact[f"energy_{tag}"])
    msp = create_detector("lhact", score_fn="msp", **params).fit(head)
    _close(msp.score(x), lhact[f"msp_{tag}"])
