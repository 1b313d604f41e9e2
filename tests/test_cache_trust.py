"""The cache never serves stale or corrupt features, and keys content, not names.

Stale: weights edited in place, an image edited in place with the same size. Corrupt: zeroed
features file, truncated chunk, corrupt meta and progress files (reported in one line, then
recomputed; or an error naming ``shapeood cache clear KEY``). Content keys: the same images
under another name reuse the entry; subsets of a cached set are sliced, with no forward pass.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from features_helpers import (
    FailingModel,
    Interrupted,
    TinyFeatureModel,
    TinyImages,
    kill_after_chunks,
)
from shapeood.data import ImageFolderDataset
from shapeood.errors import CacheWarning, CorruptCacheError
from shapeood.features import FeatureCache, describe, extract
from shapeood.features.store import array_checksum

HELPERS = Path(__file__).with_name("features_helpers.py")


def _run(model, data, cache, **kw):
    kw.setdefault("batch_size", 4)
    return extract(model, data, cache=cache, progress=False, **kw)


# ----------------------------------------------------------------------------- stale


def test_weights_edited_in_place_change_the_key(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(8)
    first = _run(model, data, tmp_path)
    calls = model.calls
    model.conv.weight.data.mul_(1.5)  # .data: a separate version counter, no _version bump
    second = _run(model, data, tmp_path)
    assert second.meta["key"] != first.meta["key"] and model.calls > calls
    assert not torch.allclose(second.features, first.features)
    calls = model.calls
    model.load_state_dict(TinyFeatureModel().state_dict())  # same module object, old weights
    third = _run(model, data, tmp_path)
    assert third.meta["key"] == first.meta["key"] and model.calls == calls  # cached again
    torch.testing.assert_close(third.features, first.features)


def test_one_weights_state_hashes_a_module_once_and_only_inside_the_block(monkeypatch):
    from shapeood.features import keys

    model = TinyFeatureModel()
    hashed: list[int] = []
    real = keys.hash_tensors
    monkeypatch.setattr(keys, "hash_tensors", lambda t: hashed.append(len(t)) or real(t))
    before = keys.weights_hash(model)
    with keys.one_weights_state():
        inside = [keys.weights_hash(model) for _ in range(3)]
        other = keys.weights_hash(TinyFeatureModel(seed=1))
    assert len(hashed) == 1 + 1 + 1 and inside == [before] * 3 and other != before
    model.conv.weight.data.mul_(1.5)
    assert keys.weights_hash(model) != before  # outside the block: hashed again


def _bmp(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path, format="BMP")


class _Flat:
    def __call__(self, image):
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0

    def __repr__(self) -> str:
        return "Flat()"


def test_image_edited_in_place_with_the_same_size_invalidates(tmp_path):
    root = tmp_path / "imgs"
    for i in range(4):
        _bmp(root / "c" / f"{i}.bmp", 10 * i)
    model = TinyFeatureModel()
    data = ImageFolderDataset(root, transform=_Flat())
    first = _run(model, data, tmp_path / "cache")
    target = root / "c" / "2.bmp"
    size = target.stat().st_size
    _bmp(target, 200)
    assert target.stat().st_size == size
    calls = model.calls
    second = _run(model, ImageFolderDataset(root, transform=_Flat()), tmp_path / "cache")
    assert second.meta["key"] != first.meta["key"] and model.calls > calls
    assert not torch.equal(second.features[2], first.features[2])
    torch.testing.assert_close(second.features[:2], first.features[:2])


def test_same_images_under_another_name_and_folder_reuse_the_entry(tmp_path):
    for folder in ("a", "b"):
        for i in range(3):
            _bmp(tmp_path / folder / "cls" / f"{i}.bmp", 30 * i)
    model, cache = TinyFeatureModel(), FeatureCache(tmp_path / "cache")
    first = _run(model, ImageFolderDataset(tmp_path / "a", _Flat(), name="setA"), cache)
    calls = model.calls
    second = _run(model, ImageFolderDataset(tmp_path / "b", _Flat(), name="setB"), cache)
    assert model.calls == calls and second.meta["key"] == first.meta["key"]
    (entry,) = cache.list()
    assert entry.names == ("setA", "setB")


# ----------------------------------------------------------------------------- corrupt


def _zero_array_bytes(path: Path) -> None:
    array = np.load(path, mmap_mode="r+")
    array[...] = 0
    array.flush()
    del array


def test_zeroed_features_file_is_reported_and_recomputed(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(8)
    first = _run(model, data, tmp_path)
    key = first.meta["key"]
    reference = first.features.clone()
    del first
    _zero_array_bytes(tmp_path / key / "features.npy")
    with pytest.raises(CorruptCacheError, match=rf"shapeood cache clear {key}") as info:
        _run(model, data, tmp_path, recompute=False)
    assert info.value.key == key and "features.npy" in str(info.value)
    calls = model.calls
    with pytest.warns(CacheWarning, match=rf"{key} is corrupt .*features\.npy.*recomputing"):
        again = _run(model, data, tmp_path)
    assert model.calls > calls
    torch.testing.assert_close(again.features, reference)


def test_truncated_features_file(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(8)
    key = _run(model, data, tmp_path).meta["key"]
    path = tmp_path / key / "logits.npy"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.warns(CacheWarning, match=rf"{key} is corrupt .*logits\.npy"):
        _run(model, data, tmp_path)
    _run(model, data, tmp_path)  # the recomputed entry verifies


@pytest.mark.parametrize(
    "garbage", ['{"num_samples": 8', "[]", '{"kind": "features", "meta_crc32": 1, "arrays": {}}']
)
def test_corrupt_meta_is_reported_recomputed_and_listed(tmp_path, garbage):
    model, cache = TinyFeatureModel(), FeatureCache(tmp_path)
    good = _run(model, TinyImages(6), cache).meta["key"]
    bad = _run(model, TinyImages(8), cache).meta["key"]
    (tmp_path / bad / "meta.json").write_text(garbage)
    states = {e.key: e.state for e in cache.list()}
    assert states == {good: "complete", bad: "corrupt"}
    from shapeood.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["cache", "--dir", str(tmp_path), "list"]) == 0
    with pytest.warns(CacheWarning, match=rf"{bad} is corrupt .*meta\.json"):
        fs = _run(model, TinyImages(8), cache)
    assert fs.meta["key"] == bad and {e.state for e in cache.list()} == {"complete"}


def _partial(tmp_path, data) -> Path:
    with pytest.raises(Interrupted):
        _run(FailingModel(fail_at=6), data, tmp_path, batch_size=2, chunk_size=4)
    (entry,) = FeatureCache(tmp_path).list()
    assert entry.state == "partial" and entry.chunks_done == 2
    return entry.path


def test_truncated_chunk_is_dropped_and_recomputed(tmp_path):
    data = TinyImages(20)
    folder = _partial(tmp_path, data)
    chunk = sorted((folder / "chunks").glob("rows_*.npz"))[1]
    chunk.write_bytes(chunk.read_bytes()[:100])
    model = TinyFeatureModel()
    with pytest.raises(CorruptCacheError, match=chunk.name):
        _run(model, data, tmp_path, batch_size=2, recompute=False)
    with pytest.warns(CacheWarning, match=rf"chunk {chunk.name}"):
        fs = _run(model, data, tmp_path, batch_size=2)
    assert model.rows == 20 - 4  # only the good chunk was reused
    clean = _run(TinyFeatureModel(), data, False, batch_size=20)
    torch.testing.assert_close(fs.features, clean.features, rtol=1e-6, atol=1e-7)


def test_chunk_with_edited_values_fails_its_checksum(tmp_path):
    data = TinyImages(20)
    folder = _partial(tmp_path, data)
    chunk = sorted((folder / "chunks").glob("rows_*.npz"))[0]
    with np.load(chunk) as z:
        parts = {k: z[k].copy() for k in z.files}
    parts["features"][0, 0] += 1.0
    np.savez(chunk, **parts)
    with pytest.warns(CacheWarning, match="does not match its checksum"):
        fs = _run(TinyFeatureModel(), data, tmp_path, batch_size=2)
    clean = _run(TinyFeatureModel(), data, False, batch_size=20)
    torch.testing.assert_close(fs.features, clean.features, rtol=1e-6, atol=1e-7)


def test_corrupt_progress_file_restarts_the_entry(tmp_path):
    data = TinyImages(20)
    folder = _partial(tmp_path, data)
    (folder / "progress.json").write_text("{not json")
    assert FeatureCache(tmp_path).list()[0].state == "corrupt"
    model = TinyFeatureModel()
    with pytest.warns(CacheWarning, match="progress.json"):
        _run(model, data, tmp_path, batch_size=2)
    assert model.rows == 20 and FeatureCache(tmp_path).list()[0].state == "complete"


# ----------------------------------------------------------------------------- content keys


def test_max_samples_subset_is_sliced_from_the_cached_full_set(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(30)
    full = _run(model, data, tmp_path)
    calls = model.calls
    rows = [0, 7, 14, 29]
    sub = _run(model, Subset(data, rows), tmp_path)
    assert model.calls == calls and len(sub) == 4
    assert torch.equal(sub.features, full.features[rows])
    assert torch.equal(sub.labels, full.labels[rows])
    assert sub.meta["sliced_from"] == full.meta["key"]
    assert sub.meta["key"] == describe(model, Subset(data, rows))["key"] != full.meta["key"]
    nested = _run(model, Subset(Subset(data, rows), [1, 3]), tmp_path)
    assert model.calls == calls and torch.equal(nested.features, full.features[[7, 29]])


def test_weights_digest_is_recomputed_at_every_call():
    from shapeood.features.keys import weights_hash

    model = TinyFeatureModel()
    before = weights_hash(model)
    model.conv.bias.data[0] += 1.0
    assert weights_hash(model) != before


# ----------------------------------------------------------------------------- other kinds


def test_entries_of_another_kind_are_listed_verified_and_cleared(tmp_path):
    cache = FeatureCache(tmp_path)
    feats = _run(TinyFeatureModel(), TinyImages(6), cache).meta["key"]
    scores = np.linspace(0, 1, 6, dtype=np.float32)
    cache.put("odin__abc", {"scores": scores}, {"model": "tiny", "dataset": "tiny6"}, kind="odin")
    assert cache.kinds() == ["features", "odin"]
    arrays, meta = cache.get("odin__abc")
    assert np.array_equal(arrays["scores"], scores) and meta["kind"] == "odin"
    assert meta["arrays"]["scores"]["crc32"] == array_checksum(scores)
    _zero_array_bytes(tmp_path / "odin__abc" / "scores.npy")
    with pytest.raises(CorruptCacheError, match="shapeood cache clear odin__abc"):
        cache.get("odin__abc", recompute=False)
    with pytest.warns(CacheWarning, match="odin__abc"):
        assert cache.get("odin__abc") is None  # removed: the caller recomputes
    cache.put("odin__abc", {"scores": scores}, {"model": "tiny"}, kind="odin")
    assert [e.kind for e in cache.list()] == ["odin", "features"] or cache.kinds() == [
        "features",
        "odin",
    ]
    assert cache.clear(kind="odin") == ["odin__abc"] and [e.key for e in cache.list()] == [feats]


# ----------------------------------------------------------------------------- torchrun kill -9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kill_9_during_torchrun_extraction_resumes(tmp_path):
    """SIGKILL to the whole torchrun process group mid-extraction; the rerun completes it."""
    cache_dir = tmp_path / "cache"
    data = TinyImages(60)
    key = describe(TinyFeatureModel(), data)["key"]
    chunk_dir = cache_dir / key / "chunks"
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(HELPERS), "distslow", str(cache_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    kill_after_chunks(proc, chunk_dir, 4, 90, group=True)
    done = len(list(chunk_dir.glob("rows_*.npz")))
    assert 4 <= done < 15 and not (cache_dir / key / "meta.json").exists()
    model = TinyFeatureModel()
    resumed = _run(model, data, cache_dir, batch_size=2)
    assert model.rows == 60 - 4 * done  # only the missing chunks of 4 rows
    clean = _run(TinyFeatureModel(), data, False, batch_size=60)
    torch.testing.assert_close(resumed.features, clean.features, rtol=1e-6, atol=1e-7)
    assert torch.equal(resumed.labels, clean.labels)
    meta = json.loads((cache_dir / key / "meta.json").read_text())
    assert meta["arrays"]["features"]["shape"] == [60, 12]
