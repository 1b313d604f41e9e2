"""Cached plain logits: detectors that can skip the head matmul agree with the feature path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shapeood import LinearHead, shaping
from shapeood.detectors import Detector, create_detector

N, D, C = 40, 64, 12
CHECK_ROWS = 8  # rows of plain_logits recomputed by the validation
SHORTCUT = {
    "msp": {},
    "max_logit": {},
    "energy": {"temperature": 3.0},
    "odin": {"noise": 0.0, "temperature": 10.0},
    "scale": {"percentile": 85},
    "scale_p65_msp": {"percentile": 65, "score_fn": "msp"},
    "himplos": {"percentile": 60, "threshold": 1.6},
}
IGNORED = ["react", "dice", "ash_p", "ash_b", "ash_s", "lhact"]


class CountingHead(LinearHead):
    """A head that records how many rows each call multiplies."""

    def __init__(self, head: LinearHead) -> None:
        super().__init__(head.weight, head.bias)
        object.__setattr__(self, "rows", [])

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        self.rows.append(int(h.shape[0]))
        return super().__call__(h)

    def into(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        self.rows.append(int(h.shape[0]))
        return super().into(h, out)


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    weight = torch.randn(C, D, generator=g) * 0.3
    bias = torch.randn(C, generator=g) * 2.0  # far from zero: SCALE must keep b unscaled
    train = torch.relu(torch.randn(150, D, generator=g)) * 1.5
    test = torch.relu(torch.randn(N, D, generator=g)) * 1.5
    test[CHECK_ROWS + 3] = 0.0  # all-zero row: SCALE factor 1
    return {
        "weight": weight,
        "bias": bias,
        "train": train,
        "labels": torch.arange(150) % C,
        "test": test,
        "plain": test @ weight.T + bias,
    }


def _fit(key: str, d: dict[str, torch.Tensor]) -> Detector:
    name = key.split("_p")[0] if key.startswith("scale") else key
    det = create_detector(name, **SHORTCUT.get(key, {"noise": 0.0} if key == "odin" else {}))
    return det.fit(LinearHead(d["weight"], d["bias"]), d["train"], d["labels"])


def _assert_logits_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    atol = 1e-5 * float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("key", sorted(SHORTCUT))
@pytest.mark.parametrize("pooled_4d", [False, True])
def test_shortcut_matches_feature_path(key: str, pooled_4d: bool, data) -> None:
    det = _fit(key, data)
    h = data["test"][:, :, None, None] if pooled_4d else data["test"]
    reference_logits = det.logits(h)
    reference_scores = det.score(h)
    plain = data["plain"].clone()
    _assert_logits_close(det.logits(h, plain_logits=plain), reference_logits)
    scores = det.score(h, plain_logits=plain)
    assert scores.dtype == torch.float32 and scores.shape == (N,)
    scale = float(reference_scores.abs().max())
    torch.testing.assert_close(scores, reference_scores, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(det.predict(h, plain_logits=plain), reference_logits.argmax(1))
    both = det.score_and_predict(h, plain_logits=plain)
    torch.testing.assert_close(both[0], scores)
    torch.testing.assert_close(both[1], reference_logits.argmax(1))
    # numpy and float64 logits are accepted; the input is never modified
    torch.testing.assert_close(det.score(h, plain_logits=plain.double().numpy()), scores)
    assert torch.equal(plain, data["plain"])


@pytest.mark.parametrize("key", sorted(SHORTCUT))
def test_shortcut_skips_the_full_matmul(key: str, data) -> None:
    det = _fit(key, data)
    counting = CountingHead(det.head_)
    det.head_ = counting
    det.score(data["test"], plain_logits=data["plain"])
    # Only the validation's few rows; HIMPLoS keeps its one matmul on the masked features.
    expected = [CHECK_ROWS] + ([N] if key == "himplos" else [])
    assert counting.rows == expected
    counting.rows.clear()
    det.score(data["test"])
    assert sum(counting.rows) == (2 * N if key == "himplos" else N)


@pytest.mark.parametrize("name", IGNORED)
def test_methods_that_need_the_matmul_ignore_plain_logits(name: str, data) -> None:
    det = _fit(name, data)
    reference = det.score(data["test"])
    assert torch.equal(det.score(data["test"], plain_logits=data["plain"]), reference)
    assert torch.equal(
        det.logits(data["test"], plain_logits=data["plain"]), det.logits(data["test"])
    )


def test_logits_returns_a_new_tensor(data) -> None:
    det = _fit("energy", data)
    plain = data["plain"].clone()
    out = det.logits(data["test"], plain_logits=plain)
    torch.testing.assert_close(out, plain)
    out.zero_()
    assert torch.equal(plain, data["plain"])
    array = data["plain"].numpy().copy()
    det.logits(data["test"], plain_logits=array).zero_()
    assert np.array_equal(array, data["plain"].numpy())


@pytest.mark.parametrize("name", ["energy", "scale", "react"])
def test_plain_logits_are_validated(name: str, data) -> None:
    det = _fit(name, data)
    h, plain = data["test"], data["plain"]
    with pytest.raises(ValueError, match=r"\(39, 12\).*\(40, 64\).*\(12, 64\)"):
        det.score(h, plain_logits=plain[:-1])
    with pytest.raises(ValueError, match=r"\(40, 11\).*\(40, 64\)"):
        det.score(h, plain_logits=plain[:, :-1])
    with pytest.raises(ValueError, match="shape"):
        det.score(h, plain_logits=plain[0])
    bad = plain.clone()
    bad[N - 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        det.predict(h, plain_logits=bad)
    other = torch.randn(C, D, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="not W h"):
        det.score_and_predict(h, plain_logits=h @ other.T + data["bias"])


def test_scale_factor_matches_scale(data) -> None:
    x = data["test"]
    factor = shaping.scale_factor(x, 85)
    assert factor.shape == (N,) and factor.dtype == torch.float32
    torch.testing.assert_close(factor[:, None] * x, shaping.scale(x, 85))
    assert factor[CHECK_ROWS + 3] == 1.0  # S2 == 0: neutral factor
    k = shaping.percentile_to_k(D, 70)
    row = x[0].double()
    expected = torch.exp(row.sum() / row.topk(k).values.sum())
    assert float(shaping.scale_factor(x.double(), 70)[0]) == pytest.approx(float(expected))
    fmap = x.view(N, 16, 2, 2)
    torch.testing.assert_close(shaping.scale_factor(fmap.numpy(), 85), factor)
    assert shaping.scale_factor(x.half(), 85).dtype == torch.float32
    with pytest.raises(ValueError, match="NaN"):
        shaping.scale_factor(torch.full((2, 4), float("nan")), 85)
