"""Logit-score detectors and ODIN against scores.npz (OpenOOD, andrijazz/ash, ReAct repo)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from conftest import load_oracle, oracle_keys
from shapeood import LinearHead
from shapeood.detectors import MSP, ODIN, Energy, MaxLogit

RTOL, ATOL = 1e-5, 1e-6
ODIN_ATOL = 1e-7
IMAGENET_STD = (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def oracle() -> dict[str, np.ndarray]:
    return load_oracle("scores")


def identity_head(num_classes: int) -> LinearHead:
    """A head that returns its input, so that features ARE the stored logits."""
    return LinearHead(torch.eye(num_classes), torch.zeros(num_classes))


def odin_net(o: dict[str, np.ndarray]) -> nn.Module:
    """The tiny seeded net of the oracle: conv -> ReLU -> global pool -> flatten -> linear."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 10),
    )  # fmt: skip
    state = {k[len("odin_net_") :]: torch.from_numpy(v) for k, v in o.items() if "odin_net_" in k}
    net.load_state_dict(state, strict=True)
    return net.eval()


def unique_max_rows(logits: np.ndarray) -> np.ndarray:
    """Rows whose maximum is not tied (the designed tie rows have no defined argmax)."""
    return (logits == logits.max(axis=1, keepdims=True)).sum(axis=1) == 1


def _check_feature_score(det, key: str, o: dict[str, np.ndarray]) -> None:
    logits = o["logits"]
    det.fit(identity_head(logits.shape[1]))
    if key.endswith("_pred"):
        rows = unique_max_rows(logits)
        np.testing.assert_array_equal(det.predict(logits).numpy()[rows], o[key][rows])
    else:
        np.testing.assert_allclose(det.score(logits).numpy(), o[key], rtol=RTOL, atol=ATOL)


def check_key(key: str, o: dict[str, np.ndarray]) -> None:
    if key == "logits":
        # Through a real head: features @ W.T + b equals the logits the detectors score.
        rng = np.random.default_rng(0)
        w = rng.standard_normal((10, 6)).astype(np.float32)
        feats = rng.standard_normal((5, 6)).astype(np.float32)
        det = MSP().fit(LinearHead(w, np.zeros(10, np.float32)))
        np.testing.assert_allclose(det.logits(feats).numpy(), feats @ w.T, rtol=RTOL, atol=ATOL)
        assert np.isfinite(o[key]).all()
        return
    if key in ("msp", "msp_pred", "ash_repo_msp"):
        _check_feature_score(MSP(), key, o)
        return
    if key in ("maxlogit", "maxlogit_pred"):
        _check_feature_score(MaxLogit(), key, o)
        return
    if key == "ash_repo_energy":
        _check_feature_score(Energy(), key, o)
        return
    m = re.fullmatch(r"energy_T(\d+)", key)
    if m:
        _check_feature_score(Energy(temperature=float(m.group(1))), key, o)
        return
    m = re.fullmatch(r"odin_noise0_T(\d+)(_pred)?", key)
    if m:
        # Zero perturbation: ODIN reduces to temperature scaling, available on features.
        _check_feature_score(ODIN(temperature=float(m.group(1)), noise=0.0), key, o)
        return
    if key == "odin_images" or key.startswith("odin_net_"):
        # The rebuilt net with zero noise gives the max softmax of its own logits.
        net, images = odin_net(o), torch.from_numpy(o["odin_images"])
        with torch.no_grad():
            expected = torch.softmax(net(images), dim=1).amax(dim=1)
        got = ODIN(temperature=1, noise=0.0, std=IMAGENET_STD).score_inputs(net, images)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=RTOL, atol=ODIN_ATOL)
        return
    m = re.fullmatch(r"odin_(openood|reactrepo)_T(\d+)_eps([\d.]+)(_pred)?", key)
    if m:
        variant, temperature, noise, pred = m.groups()
        det = ODIN(
            temperature=float(temperature),
            noise=float(noise),
            variant="openood" if variant == "openood" else "react",
            std=IMAGENET_STD if variant == "openood" else None,
        )
        score, predicted = det.score_and_predict_inputs(odin_net(o), o["odin_images"])
        if pred:
            np.testing.assert_array_equal(predicted.numpy(), o[key])
        else:
            np.testing.assert_allclose(score.numpy(), o[key], rtol=0, atol=ODIN_ATOL)
        return
    pytest.fail(f"scores.npz key {key!r} has no check: add one to test_oracle_scores.py")


@pytest.mark.parametrize("key", oracle_keys("scores"))
def test_scores_oracle(key: str, oracle: dict[str, np.ndarray]) -> None:
    check_key(key, oracle)


def test_unknown_key_fails(oracle: dict[str, np.ndarray]) -> None:
    with pytest.raises(pytest.fail.Exception):
        check_key("no_such_key", oracle)


def test_odin_without_std_is_an_error(oracle: dict[str, np.ndarray]) -> None:
    """Without std= and without pretrained_cfg there is no silent ImageNet default."""
    det = ODIN(temperature=1000, noise=0.0014)
    with pytest.raises(ValueError, match=r"std=\(s_r, s_g, s_b\)"):
        det.score_inputs(odin_net(oracle), oracle["odin_images"])
    react = ODIN(temperature=1000, noise=0.0014, variant="react")  # no std needed
    got = react.score_inputs(odin_net(oracle), oracle["odin_images"])
    expected = oracle["odin_reactrepo_T1000_eps0.0014"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=ODIN_ATOL)


def test_odin_std_from_pretrained_cfg(oracle: dict[str, np.ndarray]) -> None:
    """A model's pretrained_cfg["std"] is used; std [1, 1, 1] reproduces the ReAct variant."""
    net = odin_net(oracle)
    net.pretrained_cfg = {"std": (1.0, 1.0, 1.0)}
    got = ODIN(temperature=1000, noise=0.0014).score_inputs(net, oracle["odin_images"])
    expected = oracle["odin_reactrepo_T1000_eps0.0014"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=ODIN_ATOL)
