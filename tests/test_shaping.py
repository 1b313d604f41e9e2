"""Unit tests of ``shapeood.shaping``: formulas, dtypes, shapes, inputs, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import load_oracle
from shapeood import shaping

TOPK_SHAPERS = {
    "ash_p": shaping.ash_p,
    "ash_b": shaping.ash_b,
    "ash_s": shaping.ash_s,
    "scale": shaping.scale,
}
ALL_SHAPERS = {
    **TOPK_SHAPERS,
    "react": lambda x, *_: shaping.react(x, 1.0),
    "lhact": lambda x, *_: shaping.lhact(x),
}


def reference(name: str, x: np.ndarray, p: float) -> np.ndarray:
    """Row-by-row float64 numpy version of the formulas (inputs without ties at the cut)."""
    rows = x.reshape(x.shape[0], -1).astype(np.float64)
    out = np.zeros_like(rows)
    for i, row in enumerate(rows):
        n = row.size
        k = n - int(np.round(n * p / 100.0))
        keep = np.argsort(-row, kind="stable")[:k]
        s1, s2 = row.sum(), row[keep].sum()
        if name == "ash_p":
            out[i, keep] = row[keep]
        elif name == "ash_b":
            out[i, keep] = s1 / k
        elif name == "ash_s":
            out[i, keep] = row[keep] * np.exp(s1 / s2)
        else:
            out[i] = row * np.exp(s1 / s2)
    return out.reshape(x.shape)


def relu_features(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(*shape, generator=g))


# --------------------------------------------------------------------------- percentile -> k


@pytest.mark.parametrize(
    ("n", "p", "k"),
    [
        (2048, 65, 717),
        (2048, 85, 307),
        (2048, 90, 205),
        (2048, 95, 102),
        (2048, 99, 20),
        (10, 25, 8),  # 2.5 -> 2 (half to even)
        (10, 35, 6),  # 3.5 -> 4
        (10, 65, 4),  # 6.5 -> 6
        (10, 75, 2),  # 7.5 -> 8
        (10, 0, 10),
        (100352, 65, 35123),
    ],
)
def test_percentile_to_k(n: int, p: float, k: int) -> None:
    assert shaping.percentile_to_k(n, p) == k


@pytest.mark.parametrize("p", [-1, 100, 150, float("nan"), "high"])
def test_percentile_to_k_rejects_bad_percentile(p: object) -> None:
    with pytest.raises(ValueError, match="percentile"):
        shaping.percentile_to_k(2048, p)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_percentile_to_k_rejects_bad_n(n: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        shaping.percentile_to_k(n, 90)


# --------------------------------------------------------------------------- formulas


@pytest.mark.parametrize("name", sorted(TOPK_SHAPERS))
@pytest.mark.parametrize("p", [0, 37.5, 65, 90])
def test_topk_shapers_match_reference_across_row_blocks(
    name: str, p: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 7 rows per internal block: 50 rows give 8 blocks, the last one partial.
    monkeypatch.setitem(shaping._BLOCK_VALUES, "cpu", 7 * 512)
    x = torch.randn(50, 512, generator=torch.Generator().manual_seed(1)).abs()  # no ties
    out = TOPK_SHAPERS[name](x, p)
    np.testing.assert_allclose(out.numpy(), reference(name, x.numpy(), p), rtol=2e-5, atol=1e-6)
    monkeypatch.undo()
    torch.testing.assert_close(TOPK_SHAPERS[name](x, p), out, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(TOPK_SHAPERS))
def test_four_d_input_is_shaped_over_all_non_batch_values(name: str) -> None:
    x = relu_features(3, 8, 5, 5, seed=2)
    out = TOPK_SHAPERS[name](x, 80)
    assert out.shape == x.shape
    flat = TOPK_SHAPERS[name](x.flatten(1), 80)
    torch.testing.assert_close(out.flatten(1), flat)
    np.testing.assert_allclose(out.numpy(), reference(name, x.numpy(), 80), rtol=2e-5, atol=1e-6)


def test_non_contiguous_input() -> None:
    x = relu_features(64, 40, seed=3).t()  # (40, 64) view with strides
    assert not x.is_contiguous()
    np.testing.assert_allclose(
        shaping.ash_s(x, 70).numpy(), reference("ash_s", x.numpy(), 70), rtol=2e-5, atol=1e-6
    )


def test_top_k_mask_keeps_exactly_k_even_with_ties() -> None:
    x = torch.zeros(5, 100)
    x[:, :3] = 1.0  # ties straddle the cut at k = 10
    x[1] = 0.5  # every entry tied
    mask = shaping.top_k_mask(x, 90)
    assert mask.dtype == torch.bool and mask.shape == x.shape
    assert (mask.sum(dim=1) == 10).all()
    assert mask[:, :3][[0, 2, 3, 4]].all()


def test_ash_b_fill_is_row_mean_over_kept_count() -> None:
    x = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    out = shaping.ash_b(x, 60)  # k = 2
    torch.testing.assert_close(out, torch.tensor([[5.0, 5.0, 0.0, 0.0, 0.0]]))


def test_ash_s_and_scale_factor() -> None:
    x = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    factor = np.exp(10.0 / 7.0)
    torch.testing.assert_close(
        shaping.ash_s(x, 60), torch.tensor([[4 * factor, 3 * factor, 0.0, 0.0, 0.0]]).float()
    )
    torch.testing.assert_close(shaping.scale(x, 60), (x * factor).float())


@pytest.mark.parametrize("name", sorted(TOPK_SHAPERS))
def test_all_zero_row_is_guarded(name: str) -> None:
    x = relu_features(3, 50, seed=4)
    x[1] = 0
    out = TOPK_SHAPERS[name](x, 90)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all()
    np.testing.assert_allclose(out[[0, 2]].numpy(), reference(name, x[[0, 2]].numpy(), 90), 2e-5)


@pytest.mark.parametrize("name", sorted(TOPK_SHAPERS))
def test_percentile_that_keeps_nothing_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="keeps no value"):
        TOPK_SHAPERS[name](torch.ones(2, 10), 96)


def test_react_clips_above_threshold_only() -> None:
    x = torch.tensor([[-1.0, 0.5, 1.0, 2.5]])
    torch.testing.assert_close(shaping.react(x, 1.0), torch.tensor([[-1.0, 0.5, 1.0, 1.0]]))
    torch.testing.assert_close(shaping.react(x.numpy(), np.float32(0.5)).max(), torch.tensor(0.5))


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), None, "one"])
def test_react_rejects_bad_threshold(threshold: object) -> None:
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        shaping.react(torch.ones(2, 3), threshold)


def test_lhact_branches() -> None:
    th, tl = 1.0, 0.1
    x = torch.tensor([[0.0, 0.05, 0.5, 0.999, 1.0, 3.0]])
    out = shaping.lhact(x, th=th, tl=tl)[0].double()
    expected = [tl, tl, 0.5, 0.999, 1 / np.sqrt(2) + tl, 3 / np.sqrt(1 + 81) + tl]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


def test_lhact_when_no_value_or_every_value_reaches_th() -> None:
    low = torch.full((2, 5), 0.5)
    torch.testing.assert_close(shaping.lhact(low, th=1.0, tl=0.1), low)
    high = torch.full((2, 5), 2.0)
    expected = torch.full((2, 5), 2.0 / np.sqrt(17.0) + 0.1)
    torch.testing.assert_close(shaping.lhact(high, th=1.0, tl=0.1), expected)


def test_lhact_row_blocks_match_single_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(shaping._BLOCK_VALUES, "cpu", 10 * 2048)
    x = relu_features(300, 2048, seed=5) * 2
    out = shaping.lhact(x)
    torch.testing.assert_close(out[123:124], shaping.lhact(x[123:124]), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("th", "tl", "match"),
    [
        (1.0, 1.0, "tl must be smaller than th"),
        (1.0, 2.0, "tl must be smaller than th"),
        (0.0, -1.0, "th must be positive"),
        (float("nan"), 0.1, "th must be a finite number"),
        (1.0, float("-inf"), "tl must be a finite number"),
    ],
)
def test_lhact_rejects_bad_thresholds(th: float, tl: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        shaping.lhact(torch.ones(2, 3), th=th, tl=tl)


# --------------------------------------------------------------------------- dtypes, inputs


@pytest.mark.parametrize("name", sorted(ALL_SHAPERS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32_and_cast_back(name: str, dtype: torch.dtype) -> None:
    x = (relu_features(20, 256, seed=6) + 0.01).to(dtype)
    out = ALL_SHAPERS[name](x, 85)
    assert out.dtype == dtype and out.shape == x.shape
    expected = ALL_SHAPERS[name](x.float(), 85).to(dtype)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(ALL_SHAPERS))
def test_float64_stays_float64(name: str) -> None:
    x = relu_features(4, 64, seed=7).double()
    out = ALL_SHAPERS[name](x, 85)
    assert out.dtype == torch.float64


@pytest.mark.parametrize("name", sorted(ALL_SHAPERS))
def test_numpy_input_gives_tensor_and_is_not_modified(name: str) -> None:
    x = relu_features(4, 64, seed=8).numpy()
    before = x.copy()
    out = ALL_SHAPERS[name](x, 85)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(x, before)
    torch.testing.assert_close(out, ALL_SHAPERS[name](torch.from_numpy(before), 85))


@pytest.mark.parametrize("name", sorted(ALL_SHAPERS))
def test_integer_input_is_promoted(name: str) -> None:
    out = ALL_SHAPERS[name](torch.arange(20).reshape(2, 10), 50)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(ALL_SHAPERS))
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.tensor([[1.0, float("nan")]]), "NaN or infinite"),
        (torch.tensor([[1.0, float("inf")]]), "NaN or infinite"),
        (torch.ones(3), "must have shape"),
        (torch.ones(2, 3, 4), "must have shape"),
        (torch.ones(0, 4), "empty"),
        (torch.ones(2, 0), "empty"),
        ("features", "tensor or an array"),
    ],
)
def test_bad_features_are_refused(name: str, bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ALL_SHAPERS[name](bad, 85)


def test_large_finite_values_are_not_mistaken_for_inf() -> None:
    x = torch.full((2, 8), 3e38)  # the float32 sum overflows, the values are finite
    assert torch.equal(shaping.react(x, 1.0), torch.ones(2, 8))


@pytest.mark.parametrize("name", sorted(TOPK_SHAPERS))
@pytest.mark.parametrize("p", [-5, 100, 101, "x", None])
def test_bad_percentile_is_refused(name: str, p: object) -> None:
    with pytest.raises(ValueError, match="percentile"):
        TOPK_SHAPERS[name](torch.ones(2, 10), p)


# --------------------------------------------------------------------------- weight masks


def test_dice_mask_matches_oracle() -> None:
    z = load_oracle("dice")
    mean = z["train_features"].mean(axis=0)
    for p in (70, 90):
        mask = shaping.dice_mask(z["fc_weight"], mean, p)
        assert mask.dtype == torch.bool and mask.shape == (10, 64)
        np.testing.assert_array_equal(mask.numpy(), z[f"repo_mask_p{p}"])
        contribution = mean[None, :] * z["fc_weight"]
        assert mask.numpy().sum() == (contribution > z[f"repo_threshold_p{p}"]).sum()


def test_dice_mask_inputs() -> None:
    w = torch.randn(4, 6)
    with pytest.raises(ValueError, match="mean_feature must have shape"):
        shaping.dice_mask(w, torch.ones(5), 90)
    with pytest.raises(ValueError, match="must have shape"):
        shaping.dice_mask(torch.ones(6), torch.ones(6), 90)
    with pytest.raises(ValueError, match="percentile"):
        shaping.dice_mask(w, torch.ones(6), 100)
    with pytest.raises(ValueError, match="NaN"):
        shaping.dice_mask(w, torch.tensor([1.0, 2, 3, 4, 5, float("nan")]), 90)
    # p = 0 keeps every entry except the smallest contribution
    assert shaping.dice_mask(w, torch.ones(6), 0).sum() == 23


def test_class_row_mask_matches_oracle() -> None:
    z = load_oracle("himplos")
    for tag, p in (("p30_t0.8", 30), ("p60_t1.6", 60), ("p0_t1e+10", 0)):
        mask = shaping.class_row_mask(z["fc_weight"], p)
        assert mask.dtype == torch.bool
        np.testing.assert_array_equal(mask.numpy(), z[f"mask_{tag}"].astype(bool))


def test_class_row_mask_per_row_percentile() -> None:
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [-5.0, -4.0, -3.0, -2.0, -1.0]])
    mask = shaping.class_row_mask(w, 60)  # tau = 3.4 and -2.6
    expected = torch.tensor([[False, False, False, True, True], [False, False, False, True, True]])
    assert torch.equal(mask, expected)
    assert torch.equal(shaping.class_row_mask(w, 100).sum(dim=1), torch.tensor([1, 1]))


# --------------------------------------------------------------------------- ISH


def test_ish_shape_matches_oracle() -> None:
    z = load_oracle("ish")
    for setup in ("small", "r50"):
        out = shaping.ish_shape(z[f"{setup}_x"], 100 * float(z["param"]))  # oracle: fraction
        np.testing.assert_allclose(out.numpy(), z[f"{setup}_shaped_input"], rtol=1e-5, atol=1e-6)
        assert (np.count_nonzero(out.numpy(), axis=1) <= int(z[f"{setup}_k"])).all()


def test_ish_shape_uses_absolute_values_and_signed_sum() -> None:
    h = torch.tensor([[-3.0, 2.0, 1.0, 0.5, 0.0]])
    out = shaping.ish_shape(h, 60)  # k = floor(5 * 0.4) = 2: |-3| and 2
    factor = np.exp(0.5 / 5.0)
    torch.testing.assert_close(out, torch.tensor([[3 * factor, 2 * factor, 0, 0, 0]]).float())
    assert torch.equal(shaping.ish_shape(torch.zeros(2, 8), 50), torch.zeros(2, 8))


@pytest.mark.parametrize(
    ("p", "message"),
    [(0.85, "pass ISH percentile=85 for 85 %"), (100, r"\[0, 100\)"), (-0.1, r"\[0, 100\)"),
     ("a", "number")],
)  # fmt: skip
def test_ish_shape_takes_percent_and_refuses_fractions(p: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shaping.ish_shape(torch.ones(2, 10), p)


def test_ish_percent_rule_matches_the_fraction_rule_exactly() -> None:
    for d in (10, 64, 512, 2048):
        for p in (50, 60, 65, 70, 80, 85, 90, 95, 99):
            assert shaping.ish_kept(d, p) == int(d * (1 - float(f"0.{p:02d}")))


def test_ish_shape_requires_2d() -> None:
    with pytest.raises(ValueError, match="must have shape"):
        shaping.ish_shape(torch.ones(2, 3, 4, 4), 85)
    with pytest.raises(ValueError, match="keeps no value"):
        shaping.ish_shape(torch.ones(2, 4), 90)


def _lhact_by_element(values: list[float], th: float, tl: float) -> list[float]:
    """The reference: a Python function per element on the float32 value promoted to double."""
    return [u / math.sqrt(1 + (u / th) ** 4) + tl if u >= th else u for u in values]


# Inputs whose upper-branch value lies within a relative 2^-40 of a float32 rounding midpoint
# (found by scanning every float32 in [th, 50]): the fast branch's rounding is not trusted there.
_LHACT_NEAR_MIDPOINT = [
    1.352152705192566, 2.521656036376953, 4.179900169372559, 7.397327899932861,
    12.333208084106445, 24.321197509765625, 49.279170989990234,
]  # fmt: skip


def test_lhact_float32_equals_the_per_element_reference_bit_for_bit() -> None:
    th, tl = shaping.LHACT_TH, shaping.LHACT_TL
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [rng.uniform(1.3, 60.0, 40_000), np.float32(_LHACT_NEAR_MIDPOINT), rng.normal(size=99)]
    ).astype(np.float32)
    got = shaping.lhact(values.reshape(-1, 1), th=th, tl=tl).reshape(-1)
    clamped = np.maximum(values, np.float32(tl)).astype(np.float64).tolist()
    expected = torch.tensor(_lhact_by_element(clamped, th, tl), dtype=torch.float64)
    assert torch.equal(got, expected.to(torch.float32))


def test_lhact_float32_fallback_is_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    th, tl = 0.9, 0.05
    high = np.random.default_rng(4).uniform(th, 30.0, 5_000).astype(np.float32).astype(np.float64)
    expected = np.float32(_lhact_by_element(high.tolist(), th, tl))
    # a margin so wide that every value takes the per-element path, and none at all
    for margin in (2.0**-8, 0.0):
        monkeypatch.setattr(shaping, "_LHACT_MARGIN", margin)
        assert np.array_equal(shaping._lhact_upper_float32(high, th, tl), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_lhact_threshold_compared_in_the_input_dtype_selects_as_in_float64(dtype):
    th = 1.3520756840705868  # not representable in float16/bfloat16/float32
    below = torch.tensor(th, dtype=torch.float64).to(dtype)
    values = torch.stack(
        [below, torch.nextafter(below, torch.tensor(9.0, dtype=dtype)),
         torch.nextafter(below, torch.tensor(-9.0, dtype=dtype))]
    ).reshape(1, 3)  # fmt: skip
    got = shaping.lhact(values, th=th, tl=0.2)
    # the reference's per-element Python function on the value promoted to double
    expected = [
        u / math.sqrt(1 + (u / th) ** 4) + 0.2 if u >= th else u for u in values[0].tolist()
    ]
    assert torch.equal(got, torch.tensor([expected], dtype=torch.float64).to(dtype))
    assert shaping._at_least(th, dtype) >= th
