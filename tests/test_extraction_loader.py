"""Extraction's loader: automatic workers for image files, overlapped cache writes, same bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from features_helpers import TinyFeatureModel, TinyImages
from shapeood.data import ImageListDataset
from shapeood.features import FeatureCache, extract
from shapeood.features import extraction as ex


class ToFloat:
    """PIL RGB -> float (3, H, W) in [0, 1] minus 0.5, with a stable repr."""

    def __call__(self, image) -> torch.Tensor:
        array = np.array(image, dtype=np.uint8)
        return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0 - 0.5

    def __repr__(self) -> str:
        return "ToFloat()"


@pytest.fixture
def image_list(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(48):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
            tmp_path / f"{i:03d}.png"
        )
        lines.append(f"{i:03d}.png {i % 5}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return ImageListDataset(tmp_path, tmp_path / "list.txt", transform=ToFloat(), name="pngs")


def test_default_workers_only_for_image_files(image_list, monkeypatch):
    monkeypatch.setattr(ex, "available_cores", lambda: 16)
    assert ex.is_file_backed(image_list)
    assert ex.is_file_backed(torch.utils.data.Subset(image_list, [0, 1]))
    assert ex.default_num_workers(image_list, batch_size=8) == ex.MAX_AUTO_WORKERS
    assert ex.default_num_workers(image_list, batch_size=32) == 0  # fewer than two batches
    assert ex.default_num_workers(TinyImages(200), batch_size=8) == 0  # in memory
    monkeypatch.setattr(ex, "available_cores", lambda: 2)
    assert ex.default_num_workers(image_list, batch_size=8) == 1


def test_auto_workers_and_background_writes_give_the_same_features(image_list, tmp_path):
    model = TinyFeatureModel()
    plain = extract(model, image_list, batch_size=8, num_workers=0, cache=False, progress=False)
    cache = FeatureCache(tmp_path / "cache")
    auto = extract(model, image_list, batch_size=8, cache=cache, chunk_size=16, progress=False)
    assert torch.equal(auto.features, plain.features)
    assert torch.equal(auto.logits, plain.logits)
    assert torch.equal(auto.labels, torch.arange(48) % 5)
    (entry,) = cache.list()
    assert entry.complete
    reloaded = extract(model, image_list, batch_size=8, cache=cache, progress=False)
    assert torch.equal(reloaded.features, plain.features)


def test_a_failing_cache_write_surfaces(monkeypatch, tmp_path):
    from shapeood.features import cache as cache_module

    def broken(self, *args):
        raise OSError("disk gone")

    monkeypatch.setattr(cache_module.PartialEntry, "write", broken)
    with pytest.raises(OSError, match="disk gone"):
        extract(TinyFeatureModel(), TinyImages(40), batch_size=8, cache=tmp_path, progress=False)


def _recording_loader(monkeypatch) -> list[tuple[str, int]]:
    """Record ``(dataset name, num_workers)`` of every extraction loader; run them in-process."""
    seen: list[tuple[str, int]] = []
    real = ex.DataLoader

    def loader(dataset, **kwargs):
        seen.append((ex.dataset_name(dataset), kwargs["num_workers"]))
        return real(dataset, **{**kwargs, "num_workers": 0})

    monkeypatch.setattr(ex, "DataLoader", loader)
    return seen


def test_python_api_chooses_workers_like_the_cli():
    import inspect

    import shapeood as so
    from shapeood.cli._options import OPTIONS

    assert OPTIONS["workers"].kwargs["default"] is None
    for function in (so.extract, so.evaluate):
        assert inspect.signature(function).parameters["num_workers"].default is None
        assert "default_num_workers" in function.__doc__


def test_evaluate_gives_image_files_workers_by_default(kit, tmp_path, monkeypatch):
    import yaml

    import shapeood as so

    monkeypatch.setattr(ex, "available_cores", lambda: 4)
    with np.load(kit / "cifar10_test.npz") as z:
        images, labels = z["images"][:64], z["labels"][:64]
    lines = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image).save(tmp_path / f"{i:03d}.png", compress_level=1)
        lines.append(f"{i:03d}.png {int(label)}")
    (tmp_path / "id.txt").write_text("\n".join(lines) + "\n")
    spec = {
        "name": "workers", "family": "cifar", "num_classes": 10,
        "data_root": str(kit.resolve()),
        "id": {"test": {"imglist": str(tmp_path / "id.txt"), "root": str(tmp_path)}},
        "ood": {"far": {"mnist": {"npz": "mnist_test.npz", "rows": list(range(40))}}},
    }  # fmt: skip
    bench = tmp_path / "workers.yaml"
    bench.write_text(yaml.safe_dump(spec))
    net = so.models.load_model("resnet20_cifar10")
    options = {"methods": "msp", "batch_size": 16, "cache": False, "progress": False}
    seen = _recording_loader(monkeypatch)
    so.evaluate(net, str(bench), **options)
    workers = dict(seen)
    assert workers.pop("workers_id_test") == 3  # image files: cores - 1
    assert set(workers.values()) == {0}  # the in-memory archive decodes in the main process
    seen.clear()
    so.evaluate(net, str(bench), num_workers=0, **options)
    assert {w for _, w in seen} == {0}  # an explicit 0 is honoured


def test_extract_default_and_explicit_workers(image_list, monkeypatch):
    monkeypatch.setattr(ex, "available_cores", lambda: 3)
    seen = _recording_loader(monkeypatch)
    model = TinyFeatureModel()
    extract(model, image_list, batch_size=8, cache=False, progress=False)
    extract(model, TinyImages(40), batch_size=8, cache=False, progress=False)
    extract(model, image_list, batch_size=8, num_workers=0, cache=False, progress=False)
    assert [w for _, w in seen] == [2, 0, 0]


def test_decoders_are_imported_before_workers_fork(image_list, monkeypatch):
    """Forked workers inherit torchvision from the parent instead of importing it each."""
    monkeypatch.setattr(ex, "available_cores", lambda: 3)
    _recording_loader(monkeypatch)
    calls: list[int] = []
    monkeypatch.setattr(ex, "prepare_decoding", lambda: calls.append(1))
    model = TinyFeatureModel()
    extract(model, image_list, batch_size=8, cache=False, progress=False)  # 2 workers
    assert calls == [1]
    extract(model, TinyImages(40), batch_size=8, cache=False, progress=False)  # in memory
    extract(model, image_list, batch_size=8, num_workers=0, cache=False, progress=False)
    assert calls == [1]
