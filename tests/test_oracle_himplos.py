"""HIMPLoS detector against himplos.npz (sunzh18/HIMPLoS)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conftest import load_oracle, oracle_keys
from shapeood import LinearHead
from shapeood.detectors import HIMPLoS

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def oracle() -> dict[str, np.ndarray]:
    return load_oracle("himplos")


def _head(o: dict[str, np.ndarray]) -> LinearHead:
    return LinearHead(o["fc_weight"], o["fc_bias"])


def _train_features(o: dict[str, np.ndarray]) -> np.ndarray:
    """Spatially averaged last feature map = the pooled feature HIMPLoS averages per class."""
    return o["train_maps"].mean(axis=(2, 3))


def _fitted(o: dict[str, np.ndarray], tag: str = "p30_t0.8") -> HIMPLoS:
    m = re.fullmatch(r"p([\d.]+)_t([\d.e+]+)", tag)
    assert m, tag
    det = HIMPLoS(percentile=float(m.group(1)), threshold=float(m.group(2)))
    return det.fit(_head(o), _train_features(o), o["train_labels"])


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def check_key(key: str, o: dict[str, np.ndarray]) -> None:
    test = o["test_features"]
    if key in ("class_mean", "train_maps", "train_labels"):
        _close(_fitted(o).prototypes_.numpy(), o["class_mean"])
        return
    if key in ("plain_logits", "fc_weight", "fc_bias"):
        _close(_fitted(o).head_(torch.from_numpy(test)).numpy(), o["plain_logits"])
        return
    if key == "test_features":
        # No masking and no clipping: the shaped logits are the plain ones times the cosine.
        det = _fitted(o, "p0_t1e+10")
        expected = o["plain_logits"] * o["cos_sim_p0_t1e+10"][:, None]
        _close(det.logits(test).numpy(), expected)
        return
    m = re.fullmatch(
        r"(mask|pred|masked_clipped_feature|head_logits|cos_sim|score)_(p[\d.]+_t[\d.e+]+)", key
    )
    if m:
        what, tag = m.groups()
        det = _fitted(o, tag)
        if what == "mask":
            np.testing.assert_array_equal(det.mask_.numpy(), o[key].astype(bool))
        elif what == "pred":
            plain = det.head_(torch.from_numpy(test)).argmax(dim=1).numpy()
            np.testing.assert_array_equal(plain, o[key])
        elif what == "masked_clipped_feature":
            _close(det.masked_features(test).numpy(), o[key])
        elif what == "head_logits":
            # Shaped logits = head(masked, clipped feature) * cosine.
            cosine = det.prototype_similarity(test).numpy()[:, None]
            _close(det.head_(det.masked_features(test)).numpy(), o[key])
            _close(det.logits(test).numpy(), o[key] * cosine)
        elif what == "cos_sim":
            _close(det.prototype_similarity(test).numpy(), o[key])
        else:
            _close(det.score(test).numpy(), o[key])
            # Given prototypes, fit needs no features and gives the same score.
            given = HIMPLoS(
                percentile=det.percentile, threshold=det.threshold, prototypes=o["class_mean"]
            )
            _close(given.fit(_head(o)).score(test).numpy(), o[key])
        return
    pytest.fail(f"himplos.npz key {key!r} has no check: add one to test_oracle_himplos.py")


@pytest.mark.parametrize("key", oracle_keys("himplos"))
def test_himplos_oracle(key: str, oracle: dict[str, np.ndarray]) -> None:
    check_key(key, oracle)


def test_unknown_key_fails(oracle: dict[str, np.ndarray]) -> None:
    with pytest.raises(pytest.fail.Exception):
        check_key("no_such_key", oracle)
