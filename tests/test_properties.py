"""Property-based tests (hypothesis) of the shaping functions and the scores."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shapeood import scores, shaping

SETTINGS = settings(max_examples=60, deadline=None)

# percent; values in (0, 1) are refused as probable fractions (tested in test_bad_inputs)
percentiles = st.one_of(st.just(0.0), st.floats(min_value=1.0, max_value=90.0, allow_nan=False))


@st.composite
def activations(draw, unique: bool = False, low: float = 0.0) -> np.ndarray:
    """Non-negative float32 batches (N, D), values in [low, 1e3]; optionally without ties."""
    n = draw(st.integers(1, 6))
    d = draw(st.integers(10, 60))
    elements = st.floats(
        low, 1e3, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False
    )
    return draw(arrays(np.float32, (n, d), elements=elements, unique=unique))


@st.composite
def logit_batches(draw) -> np.ndarray:
    n = draw(st.integers(1, 12))
    c = draw(st.integers(2, 12))
    elements = st.floats(
        -50.0, 50.0, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False
    )
    return draw(arrays(np.float32, (n, c), elements=elements))


@SETTINGS
@given(x=activations(), p=percentiles)
def test_ash_b_keeps_each_row_sum(x: np.ndarray, p: float) -> None:
    out = shaping.ash_b(x, p).numpy().astype(np.float64)
    k = shaping.percentile_to_k(x.shape[1], p)
    np.testing.assert_allclose(out.sum(axis=1), x.astype(np.float64).sum(axis=1), rtol=1e-5)
    assert (np.count_nonzero(out, axis=1) <= k).all()
    assert (np.count_nonzero(out, axis=1)[x.sum(axis=1) > 0] == k).all()


@SETTINGS
@given(x=activations(), p=percentiles)
def test_scale_keeps_the_zero_pattern(x: np.ndarray, p: float) -> None:
    x = x / 100.0  # keep exp(S1/S2) * x inside float32
    out = shaping.scale(x, p).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out != 0, x != 0)
    assert (out >= x).all(), "the SCALE factor exp(S1/S2) is >= 1 for non-negative input"


@SETTINGS
@given(
    x=activations(),
    p=percentiles,
    name=st.sampled_from(["ash_p", "ash_b", "ash_s", "scale", "react", "lhact"]),
    as_numpy=st.booleans(),
)
def test_shaping_never_mutates_its_input(x: np.ndarray, p: float, name: str, as_numpy: bool):
    fn = {
        "react": lambda v, _: shaping.react(v, 1.0),
        "lhact": lambda v, _: shaping.lhact(v),
    }.get(name, getattr(shaping, name))
    before = x.copy()
    arg = x if as_numpy else torch.from_numpy(x)
    out = fn(arg, p)
    np.testing.assert_array_equal(x, before)
    if not as_numpy:
        assert out.data_ptr() != arg.data_ptr()


@SETTINGS
@given(x=activations(unique=True, low=0.125), p=percentiles)
def test_ash_p_keeps_exactly_the_k_largest_entries(x: np.ndarray, p: float) -> None:
    out = shaping.ash_p(x, p).numpy()
    k = shaping.percentile_to_k(x.shape[1], p)
    assert (np.count_nonzero(out, axis=1) == k).all()
    kept = out != 0
    np.testing.assert_array_equal(out[kept], x[kept])  # a subset of the input entries
    for row, mask in zip(x, kept, strict=True):
        assert row[mask].min() > row[~mask].max(initial=-np.inf)


@SETTINGS
@given(z=logit_batches(), seed=st.integers(0, 2**16))
def test_scores_are_permutation_equivariant(z: np.ndarray, seed: int) -> None:
    perm = np.random.default_rng(seed).permutation(z.shape[0])
    for fn in (scores.msp, scores.max_logit, scores.energy):
        torch.testing.assert_close(fn(z[perm]), fn(z)[perm], rtol=0, atol=0)


@SETTINGS
@given(z=logit_batches(), t=st.floats(0.01, 100.0))
def test_energy_bounds_and_low_temperature_limit(z: np.ndarray, t: float) -> None:
    zt = torch.from_numpy(z).double()
    top = scores.max_logit(zt)
    e = scores.energy(zt, t)
    # max z <= T logsumexp(z / T) <= max z + T log C
    assert (e >= top - 1e-9).all()
    assert (e <= top + t * np.log(z.shape[1]) + 1e-9).all()
    assert torch.allclose(scores.energy(zt, 1e-4), top, atol=1e-4 * np.log(z.shape[1]) + 1e-9)
