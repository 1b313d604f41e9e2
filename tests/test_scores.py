"""Unit tests of ``shapeood.scores`` against the oracle and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_oracle
from shapeood import scores

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def z() -> dict[str, np.ndarray]:
    return load_oracle("scores")


@pytest.mark.parametrize(
    ("key", "fn"),
    [
        ("msp", scores.msp),
        ("ash_repo_msp", scores.msp),
        ("maxlogit", scores.max_logit),
        ("energy_T1", scores.energy),
        ("ash_repo_energy", scores.energy),
        ("energy_T2", lambda x: scores.energy(x, temperature=2)),
        ("energy_T10", lambda x: scores.energy(x, temperature=10.0)),
        ("energy_T1000", lambda x: scores.energy(x, 1000)),
    ],
)
def test_scores_match_oracle(z: dict[str, np.ndarray], key: str, fn) -> None:
    out = fn(z["logits"])
    assert isinstance(out, torch.Tensor) and out.shape == (64,) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), z[key], rtol=RTOL, atol=ATOL)


def test_oracle_edge_rows(z: dict[str, np.ndarray]) -> None:
    logits = z["logits"]
    assert np.allclose(scores.msp(logits)[0].item(), 0.1)  # all ten logits equal
    assert np.isclose(scores.msp(logits)[1].item(), z["msp"][1], rtol=1e-6)  # duplicated max
    assert torch.isfinite(scores.energy(logits[2:4])).all()  # |z| ~ 1e3 and shifted by -1000


def test_reference_formulas_in_float64() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g, dtype=torch.float64) * 5
    torch.testing.assert_close(scores.msp(logits), torch.softmax(logits, 1).max(1).values)
    torch.testing.assert_close(scores.max_logit(logits), logits.max(1).values)
    for t in (0.5, 1.0, 3.0):
        expected = t * torch.log(torch.exp(logits / t).sum(1))
        torch.testing.assert_close(scores.energy(logits, t), expected)
    assert scores.energy(logits).dtype == torch.float64


def test_huge_logits_are_stable() -> None:
    logits = torch.tensor([[1e4, 0.0, -1e4], [-3e4, -3e4 - 1.0, -3e4 - 2.0]])
    assert torch.isfinite(scores.energy(logits)).all()
    torch.testing.assert_close(scores.msp(logits)[0], torch.tensor(1.0))
    expected = 1.0 / (1.0 + np.exp(-1.0) + np.exp(-2.0))
    assert np.isclose(scores.msp(logits)[1].item(), expected, rtol=1e-6)
    assert np.isclose(scores.energy(logits)[0].item(), 1e4, rtol=1e-7)


@pytest.mark.parametrize("fn", [scores.msp, scores.max_logit, scores.energy])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_give_float32_scores(fn, dtype: torch.dtype) -> None:
    logits = torch.randn(10, 5, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = fn(logits)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fn(logits.float()))


@pytest.mark.parametrize("fn", [scores.msp, scores.max_logit, scores.energy])
def test_numpy_input(fn) -> None:
    logits = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    out = fn(logits)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, fn(torch.from_numpy(logits)))


@pytest.mark.parametrize("fn", [scores.msp, scores.max_logit, scores.energy])
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.ones(5), "must have shape"),
        (torch.ones(2, 3, 4), "must have shape"),
        (torch.ones(0, 3), "empty"),
        (torch.tensor([[0.0, float("nan")]]), "NaN or infinite"),
        (torch.tensor([[0.0, float("-inf")]]), "NaN or infinite"),
    ],
)
def test_bad_logits_are_refused(fn, bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(bad)


@pytest.mark.parametrize("t", [0, -1.0, float("nan"), float("inf"), "warm", None])
def test_energy_rejects_bad_temperature(t: object) -> None:
    with pytest.raises(ValueError, match="temperature"):
        scores.energy(torch.ones(2, 3), temperature=t)
