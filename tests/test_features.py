"""extract(): one forward per batch, features + head logits, cache hits without a forward."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import Subset

from features_helpers import DIM, NUM_CLASSES, TinyFeatureModel, TinyImages
from shapeood.features import FeatureCache, describe, extract


def _reference(model: TinyFeatureModel, data: TinyImages) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        h = torch.relu(model.conv(x)).mean(dim=(2, 3))
    return h, h @ model.head.weight.T + model.head.bias


def test_extract_returns_features_logits_labels(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(23)
    fs = extract(model, data, batch_size=5, cache=tmp_path, progress=False)
    h, logits = _reference(model, data)
    assert fs.features.shape == (23, DIM) and fs.features.dtype == torch.float32
    assert fs.logits.shape == (23, NUM_CLASSES) and fs.logits.dtype == torch.float32
    assert fs.labels.dtype == torch.int64
    assert torch.equal(fs.labels, data.labels)
    torch.testing.assert_close(fs.features, h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fs.logits, logits, rtol=1e-5, atol=1e-6)
    # one forward per batch: ceil(23 / 5) = 5, covering each row exactly once
    assert model.calls == 5 and model.rows == 23
    assert fs.meta["key"].startswith("tiny__") and fs.meta["names"] == ["tiny23"]
    assert fs.meta["num_samples"] == 23 and fs.meta["dim"] == DIM


def test_warm_rerun_does_no_forward_pass(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(30)
    cold = extract(model, data, batch_size=8, cache=tmp_path, progress=False)
    assert model.calls == 4
    model.calls = 0
    warm = extract(model, data, batch_size=8, cache=tmp_path, progress=False)
    assert model.calls == 0
    assert torch.equal(warm.features, cold.features) and torch.equal(warm.logits, cold.logits)
    assert torch.equal(warm.labels, cold.labels)
    # a different batch size is the same content: still a hit
    extract(model, data, batch_size=3, cache=tmp_path, progress=False)
    assert model.calls == 0


def test_batch_size_and_chunking_do_not_change_the_result():
    model, data = TinyFeatureModel(), TinyImages(37)
    one = extract(model, data, batch_size=37, cache=False, progress=False)
    many = extract(model, data, batch_size=4, chunk_size=6, cache=False, progress=False)
    torch.testing.assert_close(one.features, many.features, rtol=1e-6, atol=1e-7)
    assert torch.equal(one.labels, many.labels)


def test_changed_weights_change_the_key_and_are_recomputed(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(12)
    first = extract(model, data, batch_size=4, cache=tmp_path, progress=False)
    with torch.no_grad():
        model.conv.weight.mul_(2.0)  # in place: same storage, new content
    model.calls = 0
    second = extract(model, data, batch_size=4, cache=tmp_path, progress=False)
    assert model.calls == 3
    assert second.meta["key"] != first.meta["key"]
    assert not torch.allclose(second.features, first.features)
    assert len(FeatureCache(tmp_path).list()) == 2


def test_changed_transform_or_data_changes_the_key():
    model = TinyFeatureModel()
    base = describe(model, TinyImages(12))["key"]

    class Other:
        def __call__(self, image):
            return image.float() / 255.0

        def __repr__(self):
            return "Other()"

    assert describe(model, TinyImages(12, transform=Other()))["key"] != base
    assert describe(model, TinyImages(12, seed=1))["key"] != base
    assert describe(model, TinyImages(12), amp=True)["key"] != base
    assert describe(TinyFeatureModel(seed=3), TinyImages(12))["key"] != base
    assert describe(model, TinyImages(12))["key"] == base  # deterministic
    assert describe(model, Subset(TinyImages(12), [0, 1, 2]))["key"] != base


def test_dataset_without_fingerprint_is_not_cached_unless_keyed(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(10, fingerprinted=False)
    with pytest.warns(UserWarning, match="no fingerprint"):
        extract(model, data, batch_size=5, cache=tmp_path, progress=False)
    assert FeatureCache(tmp_path).list() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs = extract(model, data, batch_size=5, cache=tmp_path, key="my-data", progress=False)
    assert fs.meta["key"] in FeatureCache(tmp_path)
    model.calls = 0
    extract(model, data, batch_size=5, cache=tmp_path, key="my-data", progress=False)
    assert model.calls == 0


def test_amp_bfloat16_on_cpu_stores_float32_close_to_full_precision():
    model, data = TinyFeatureModel(), TinyImages(16)
    full = extract(model, data, batch_size=8, cache=False, progress=False)
    half = extract(model, data, batch_size=8, amp=True, cache=False, progress=False)
    assert half.features.dtype == torch.float32 and half.logits.dtype == torch.float32
    assert half.meta["precision"] == "bfloat16"
    torch.testing.assert_close(half.features, full.features, rtol=0.05, atol=0.05)
    assert not torch.equal(half.features, full.features)


def test_model_mode_is_restored_and_channels_last_gives_the_same_result():
    model, data = TinyFeatureModel(), TinyImages(9)
    model.train()
    model.conv.eval()  # mixed modes: each module gets its own mode back
    plain = extract(model, data, batch_size=4, cache=False, progress=False)
    assert model.training and not model.conv.training
    nhwc = extract(model, data, batch_size=4, channels_last=True, cache=False, progress=False)
    torch.testing.assert_close(plain.features, nhwc.features, rtol=1e-5, atol=1e-6)


def test_dataset_of_images_only_gets_label_minus_one():
    class ImagesOnly(torch.utils.data.Dataset):
        def __init__(self):
            self.inner = TinyImages(7)

        def __len__(self):
            return 7

        def __getitem__(self, i):
            return self.inner[i][0]

    fs = extract(TinyFeatureModel(), ImagesOnly(), batch_size=3, cache=False, progress=False)
    assert torch.equal(fs.labels, torch.full((7,), -1))


def test_workers_give_the_same_result():
    model, data = TinyFeatureModel(), TinyImages(20)
    serial = extract(model, data, batch_size=6, cache=False, progress=False)
    model_w = TinyFeatureModel()
    parallel = extract(model_w, data, batch_size=6, num_workers=2, cache=False, progress=False)
    assert torch.equal(serial.features, parallel.features)
    assert torch.equal(serial.labels, parallel.labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"amp": "int8"}, "amp"),
        ({"cache": 3.5}, "cache"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract(TinyFeatureModel(), TinyImages(4), progress=False, **kwargs)


def test_bad_model_and_empty_dataset_raise():
    with pytest.raises(ValueError, match=r"nn\.Module"):
        extract(object(), TinyImages(4), progress=False)
    with pytest.raises(ValueError, match="empty"):
        extract(TinyFeatureModel(), TinyImages(0), cache=False, progress=False)


def test_raw_images_without_transform_and_without_cfg_raise():
    class Raw(torch.utils.data.Dataset):
        transform = None

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8, dtype=torch.uint8), 0

    model = TinyFeatureModel()
    model.pretrained_cfg = {}
    with pytest.raises(ValueError, match="transform"):
        extract(model, Raw(), cache=False, progress=False)


def test_transform_with_a_memory_address_in_its_repr_warns(tmp_path):
    data = TinyImages(4, transform=lambda image: image.float() / 255.0)
    with pytest.warns(UserWarning, match="memory address"):
        extract(TinyFeatureModel(), data, batch_size=4, cache=tmp_path, progress=False)


def test_uncached_result_carries_its_identity():
    fs = extract(TinyFeatureModel(), TinyImages(6), batch_size=4, cache=False, progress=False)
    assert fs.meta["key"] == describe(TinyFeatureModel(), TinyImages(6))["key"]
    assert fs.meta["dim"] == DIM and fs.meta["num_classes"] == NUM_CLASSES
    assert "path" not in fs.meta
