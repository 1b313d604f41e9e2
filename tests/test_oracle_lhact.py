"""Every array of oracle ``lhact.npz`` (LHAct rectification, logits, energy, MSP, curve)."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
import torch

from conftest import load_oracle, oracle_keys
from shapeood import scores, shaping
from shapeood.head import LinearHead

RTOL, ATOL = 1e-5, 1e-6
TAG_PARAMS = {
    "default": (shaping.LHACT_TH, shaping.LHACT_TL),
    "th1_tl0.1": (1.0, 0.1),
}
KEYS = oracle_keys("lhact")


@pytest.fixture(scope="module")
def z() -> dict[str, np.ndarray]:
    return load_oracle("lhact")


def _params(z: dict[str, np.ndarray], tag: str) -> tuple[float, float]:
    return float(z[f"th_{tag}"]), float(z[f"tl_{tag}"])


def check_input(z: dict[str, np.ndarray], key: str) -> None:
    shapes = {"x_pooled": (16, 2048), "fc_weight": (16, 2048), "fc_bias": (16,), "grid_x": (601,)}
    assert z[key].shape == shapes[key] and z[key].dtype == np.float32
    if key == "x_pooled":
        x = z[key]
        assert (np.delete(x, 1, axis=0)[:, :50] == 0).all()
        np.testing.assert_allclose(x[1, :20], np.linspace(0, 6, 20), rtol=1e-6)
        assert (x >= 0).all()
        assert x[0, 100] == np.float32(shaping.LHACT_TH)
        assert x[0, 102] == np.float32(shaping.LHACT_TL)


def check_threshold(z: dict[str, np.ndarray], key: str, which: str, tag: str) -> None:
    th, tl = TAG_PARAMS[tag]
    assert float(z[key]) == {"th": th, "tl": tl}[which]


def check_rectified(z: dict[str, np.ndarray], key: str, tag: str) -> None:
    th, tl = _params(z, tag)
    out = shaping.lhact(z["x_pooled"], th=th, tl=tl)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), z[key], rtol=RTOL, atol=ATOL)
    # float32(th) > th in double: the entry equal to float32(th) is on the upper branch.
    if tag == "default":
        assert np.isclose(out[0, 100].item(), th / np.sqrt(2.0) + tl, rtol=1e-6)
        assert np.isclose(out[0, 101].item(), np.float32(z["x_pooled"][0, 101]), rtol=1e-7)


def _logits(z: dict[str, np.ndarray], tag: str) -> torch.Tensor:
    th, tl = _params(z, tag)
    head = LinearHead(z["fc_weight"], z["fc_bias"])
    return head(shaping.lhact(z["x_pooled"], th=th, tl=tl))


def check_score(z: dict[str, np.ndarray], key: str, what: str, tag: str) -> None:
    logits = _logits(z, tag)
    value = {"logits": logits, "energy": scores.energy(logits), "msp": scores.msp(logits)}[what]
    np.testing.assert_allclose(value.numpy(), z[key], rtol=RTOL, atol=ATOL)


def check_grid(z: dict[str, np.ndarray], key: str) -> None:
    out = shaping.lhact(z["grid_x"][:, None]).numpy()[:, 0]
    np.testing.assert_allclose(out, z[key], rtol=RTOL, atol=ATOL)
    th, tl = shaping.LHACT_TH, shaping.LHACT_TL
    grid = z["grid_x"]
    assert (out >= np.float32(tl)).all()
    below, above = out[grid < th], out[grid >= th]
    assert below.max() < th and above.max() <= th / np.sqrt(2.0) + tl + 1e-6


RULES: list[tuple[re.Pattern[str], Callable[..., None]]] = [
    (re.compile(r"x_pooled|fc_weight|fc_bias|grid_x"), check_input),
    (re.compile(r"(th|tl)_(default|th1_tl0\.1)"), check_threshold),
    (re.compile(r"rectified_(default|th1_tl0\.1)"), check_rectified),
    (re.compile(r"(logits|energy|msp)_(default|th1_tl0\.1)"), check_score),
    (re.compile(r"grid_rectified_default"), check_grid),
]


@pytest.mark.parametrize("key", KEYS)
def test_oracle_key(z: dict[str, np.ndarray], key: str) -> None:
    for pattern, check in RULES:
        m = pattern.fullmatch(key)
        if m:
            check(z, key, *m.groups())
            return
    pytest.fail(f"no rule for oracle array lhact:{key}; add one to {__name__}")
