"""The feature cache: on-disk format, listing and clearing, resumption after a kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from features_helpers import (
    FailingModel,
    Interrupted,
    TinyFeatureModel,
    TinyImages,
    kill_after_chunks,
)
from shapeood.features import (
    FeatureCache,
    FeatureSet,
    describe,
    extract,
    load_featureset,
    save_featureset,
)

HELPERS = Path(__file__).with_name("features_helpers.py")


def _small_set(n: int = 6) -> FeatureSet:
    gen = torch.Generator().manual_seed(0)
    return FeatureSet(
        torch.randn(n, 4, generator=gen),
        torch.randn(n, 3, generator=gen),
        torch.arange(n) - 1,
        {"model": "m", "dataset": "d", "key": "k"},
    )


@pytest.mark.parametrize("mmap", [True, False])
def test_save_and_load_round_trip(tmp_path, mmap):
    fs = _small_set()
    save_featureset(fs, tmp_path / "entry")
    back = load_featureset(tmp_path / "entry", mmap=mmap)
    assert torch.equal(back.features, fs.features) and torch.equal(back.logits, fs.logits)
    assert torch.equal(back.labels, fs.labels) and back.labels.dtype == torch.int64
    assert back.meta["model"] == "m" and back.meta["complete"] and back.meta["dim"] == 4
    back.features[0, 0] = 123.0  # copy-on-write: the file is untouched
    assert float(load_featureset(tmp_path / "entry").features[0, 0]) == float(fs.features[0, 0])
    again = load_featureset(save_featureset(fs, tmp_path / "again"), mmap=mmap)
    assert torch.equal(again.logits, fs.logits) and len(again) == len(fs)


def test_load_of_an_incomplete_folder_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"meta\.json"):
        load_featureset(tmp_path)


def test_list_load_and_clear(tmp_path):
    cache = FeatureCache(tmp_path)
    a = extract(TinyFeatureModel(), TinyImages(10), batch_size=4, cache=cache, progress=False)
    b = extract(TinyFeatureModel(), TinyImages(6), batch_size=4, cache=cache, progress=False)
    entries = {e.key: e for e in cache.list()}
    assert set(entries) == {a.meta["key"], b.meta["key"]}
    entry = entries[a.meta["key"]]
    assert (entry.model, entry.dataset, entry.num_samples, entry.dim) == ("tiny", "tiny10", 10, 12)
    assert entry.complete and entry.size_bytes > 10 * 12 * 4
    assert torch.equal(cache.load(a.meta["key"]).features, a.features)
    assert cache.clear(b.meta["key"]) == [b.meta["key"]]
    assert [e.key for e in cache.list()] == [a.meta["key"]]
    assert cache.clear() == [a.meta["key"]] and cache.list() == []
    with pytest.raises(KeyError):
        cache.load(a.meta["key"])
    with pytest.raises(ValueError, match="key"):
        cache.path("../escape")


def test_interrupted_run_resumes_on_the_same_chunk_grid(tmp_path):
    data = TinyImages(40)
    with pytest.raises(Interrupted):
        extract(
            FailingModel(fail_at=6),
            data,
            batch_size=2,
            chunk_size=4,
            cache=tmp_path,
            progress=False,
        )
    (entry,) = FeatureCache(tmp_path).list()
    assert not entry.complete and (entry.chunks_done, entry.chunks_total) == (2, 10)
    model = TinyFeatureModel()
    # another batch size: the stored chunk grid (4 rows) still decides what is missing
    resumed = extract(model, data, batch_size=3, chunk_size=16, cache=tmp_path, progress=False)
    assert model.rows == 40 - 2 * 4
    clean = extract(TinyFeatureModel(), data, batch_size=40, cache=False, progress=False)
    torch.testing.assert_close(resumed.features, clean.features, rtol=1e-6, atol=1e-7)
    assert torch.equal(resumed.labels, clean.labels)
    (entry,) = FeatureCache(tmp_path).list()
    assert entry.complete
    assert not (entry.path / "chunks").exists() and not (entry.path / "progress.json").exists()


def test_refresh_recomputes(tmp_path):
    model, data = TinyFeatureModel(), TinyImages(8)
    extract(model, data, batch_size=4, cache=tmp_path, progress=False)
    model.calls = 0
    extract(model, data, batch_size=4, cache=tmp_path, refresh=True, progress=False)
    assert model.calls == 2


def test_kill_9_mid_extraction_resumes_only_missing_chunks(tmp_path):
    """A real SIGKILL: only whole chunks survive, the rerun computes exactly the rest."""
    key = describe(TinyFeatureModel(), TinyImages(60))["key"]
    chunk_dir = tmp_path / key / "chunks"
    proc = subprocess.Popen(
        [sys.executable, str(HELPERS), "slow", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    kill_after_chunks(proc, chunk_dir, 3, 60)
    assert proc.returncode == -signal.SIGKILL
    done = len(list(chunk_dir.glob("rows_*.npz")))
    assert 3 <= done < 15
    assert not (tmp_path / key / "meta.json").exists()

    model = TinyFeatureModel()
    resumed = extract(model, TinyImages(60), batch_size=2, cache=tmp_path, progress=False)
    assert model.rows == 60 - 4 * done
    assert model.calls == (60 - 4 * done) // 2
    clean = extract(TinyFeatureModel(), TinyImages(60), batch_size=2, cache=False, progress=False)
    assert torch.equal(resumed.features, clean.features)
    assert torch.equal(resumed.logits, clean.logits)
    assert torch.equal(resumed.labels, clean.labels)
    assert key in FeatureCache(tmp_path)


def test_two_writers_of_one_key_both_get_the_merged_set(tmp_path):
    """Two processes finishing the same entry: the later one finds it merged and loads it."""
    cache = FeatureCache(tmp_path)
    fs = _small_set(10)
    writers = [cache.open("same-key", 10, 4, {"model": "m"}) for _ in range(2)]
    for w in writers:
        w.start()
        for i in w.missing_chunks():
            rows = slice(*w.bounds(i))
            w.write(i, fs.features[rows], fs.logits[rows], fs.labels[rows])
    first = writers[0].finish({"model": "m"})
    assert not (tmp_path / "same-key" / "chunks").exists()
    second = writers[1].finish({"model": "m"})  # its chunks are gone: loads the merged set
    for got in (first, second):
        assert torch.equal(got.features, fs.features) and torch.equal(got.labels, fs.labels)
    assert [e.key for e in cache.list()] == ["same-key"]
