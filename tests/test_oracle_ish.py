"""ISH against the original trainer's arrays (oracle ish.npz), one test per stored key."""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import load_oracle, oracle_keys
from shapeood import shaping
from shapeood.train import ISHLinear
from shapeood.train.ish import DEFAULT_PERCENTILE, ish_kept

RTOL, ATOL = 1e-5, 1e-6
GRADIENTS = ("logits", "grad_weight", "grad_bias", "grad_input")


@cache
def oracle() -> dict[str, np.ndarray]:
    return load_oracle("ish")


def arrays(setup: str) -> dict[str, torch.Tensor]:
    z = oracle()
    return {
        name: torch.from_numpy(z[f"{setup}_{name}"]) for name in ("x", "y", "fc_weight", "fc_bias")
    }


def make_layer(setup: str, ish: bool) -> nn.Linear:
    a = arrays(setup)
    c, d = a["fc_weight"].shape
    layer = ISHLinear(d, c, percentile=100 * float(oracle()["param"])) if ish else nn.Linear(d, c)
    with torch.no_grad():
        layer.weight.copy_(a["fc_weight"])
        layer.bias.copy_(a["fc_bias"])
    return layer


@cache
def run(setup: str, mode: str) -> dict[str, np.ndarray]:
    """Train-mode forward + mean cross-entropy backward, as the oracle did."""
    a = arrays(setup)
    layer = make_layer(setup, ish=mode == "ish").train()
    x = a["x"].clone().requires_grad_(True)
    logits = layer(x)
    F.cross_entropy(logits, a["y"]).backward()
    out = {"logits": logits, "grad_weight": layer.weight.grad, "grad_bias": layer.bias.grad}
    out["grad_input"] = x.grad
    return {k: v.detach().numpy() for k, v in out.items()}


def check_param(key: str, value: np.ndarray) -> None:
    # the oracle stores ISH's fraction; shapeood takes percent like every percentile
    assert 100 * float(value) == pytest.approx(DEFAULT_PERCENTILE)
    assert ISHLinear(64, 10).percentile == pytest.approx(100 * float(value))


def check_input(setup: str, name: str, value: np.ndarray) -> None:
    a = arrays(setup)
    b, d = a["x"].shape
    c = a["fc_weight"].shape[0]
    expected = {"x": (b, d), "y": (b,), "fc_weight": (c, d), "fc_bias": (c,)}[name]
    assert value.shape == expected
    if name == "y":
        assert value.min() >= 0 and value.max() < c
    if name == "x":  # non-negative, first D/8 columns exactly zero, so shaping is exercised
        assert (value >= 0).all() and not value[:, : d // 8].any()


def check_k(setup: str, value: np.ndarray) -> None:
    d = arrays(setup)["x"].shape[1]
    assert ish_kept(d, 100 * float(oracle()["param"])) == int(value)
    shaped = oracle()[f"{setup}_shaped_input"]
    assert ((shaped != 0).sum(axis=1) == int(value)).all()


def check_shaped_input(setup: str, value: np.ndarray) -> None:
    x = arrays(setup)["x"]
    got = shaping.ish_shape(x, percentile=100 * float(oracle()["param"]))
    np.testing.assert_allclose(got.numpy(), value, rtol=RTOL, atol=ATOL)
    assert not torch.equal(got, x), "ish_shape must not return its input"


def check_run(setup: str, mode: str, what: str, value: np.ndarray) -> None:
    np.testing.assert_allclose(run(setup, mode)[what], value, rtol=RTOL, atol=ATOL)
    if what != "grad_weight":  # ISH leaves everything but the weight gradient unchanged
        np.testing.assert_allclose(
            run(setup, "ish")[what], run(setup, "plain")[what], rtol=0, atol=0
        )
    elif mode == "ish":
        assert not np.allclose(run(setup, "ish")[what], run(setup, "plain")[what])


def check_eval_logits(setup: str, value: np.ndarray) -> None:
    a = arrays(setup)
    layer = make_layer(setup, ish=True).eval()
    x = a["x"].clone().requires_grad_(True)
    logits = layer(x)
    np.testing.assert_allclose(logits.detach().numpy(), value, rtol=RTOL, atol=ATOL)
    F.cross_entropy(logits, a["y"]).backward()  # eval mode: plain gradients
    np.testing.assert_allclose(
        layer.weight.grad.numpy(), run(setup, "plain")["grad_weight"], rtol=RTOL, atol=ATOL
    )


PATTERN = re.compile(r"^(small|r50)_(.+)$")


@pytest.mark.parametrize("key", oracle_keys("ish"))
def test_ish_oracle(key: str) -> None:
    value = oracle()[key]
    if key == "param":
        return check_param(key, value)
    match = PATTERN.match(key)
    assert match, f"unhandled oracle key {key!r}"
    setup, name = match.groups()
    if name in ("x", "y", "fc_weight", "fc_bias"):
        return check_input(setup, name, value)
    if name == "k":
        return check_k(setup, value)
    if name == "shaped_input":
        return check_shaped_input(setup, value)
    if name == "eval_logits":
        return check_eval_logits(setup, value)
    mode, _, what = name.partition("_")
    assert mode in ("plain", "ish") and what in GRADIENTS, f"unhandled oracle key {key!r}"
    return check_run(setup, mode, what, value)


def test_ish_weight_gradient_is_grad_logits_times_shaped_input() -> None:
    """dL/dW = (dL/dy)^T h~ with the oracle's own shaped input (independent of ish_shape)."""
    z = oracle()
    for setup in ("small", "r50"):
        grad_logits = torch.from_numpy(run(setup, "plain")["logits"]).softmax(1)
        y = torch.from_numpy(z[f"{setup}_y"])
        grad_logits[torch.arange(len(y)), y] -= 1
        grad_logits /= len(y)
        expected = grad_logits.T @ torch.from_numpy(z[f"{setup}_shaped_input"])
        np.testing.assert_allclose(
            run(setup, "ish")["grad_weight"], expected.numpy(), rtol=1e-4, atol=1e-6
        )
