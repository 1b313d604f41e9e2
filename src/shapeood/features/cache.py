"""The feature cache: one folder per content key, filled chunk by chunk, resumable.

Layout of ``<root>/<key>/``::

    progress.json            while extracting: rows, chunk size, key components
    chunks/rows_<start>.npz  finished chunks (each written atomically)
    features.npy logits.npy labels.npy meta.json   once complete (meta.json written last)

An extraction killed at any point leaves only whole chunks behind; the next run computes only
the missing ones. ``root`` defaults to ``shapeood.paths.cache_root() / "features"``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shapeood.features.featureset import FeatureSet
from shapeood.features.store import (
    ARRAYS,
    META_FILE,
    is_complete,
    load_featureset,
    read_chunk,
    read_json,
    write_chunk,
    write_json,
)
from shapeood.paths import cache_root

PROGRESS_FILE = "progress.json"
CHUNK_DIR = "chunks"


def default_cache_dir() -> Path:
    """``$SHAPEOOD_CACHE/features`` (``~/.cache/shapeood/features`` by default)."""
    return cache_root() / "features"


@dataclass(frozen=True)
class CacheEntry:
    """One cached (or partly cached) feature set, as listed by :meth:`FeatureCache.list`."""

    key: str
    model: str
    dataset: str
    num_samples: int
    dim: int | None
    size_bytes: int
    complete: bool
    chunks_done: int
    chunks_total: int
    path: Path
    kind: str = "features"  # or "odin": input-perturbation scores (features/perturbation.py)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class FeatureCache:
    """A folder of cached feature sets, keyed by content (see :mod:`shapeood.features.keys`).

    ``list()`` describes every entry, ``load(key)`` reopens a complete one, ``clear(prefix)``
    removes entries whose key starts with ``prefix`` (all of them when ``prefix`` is None).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r})"

    def path(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key in (".", ".."):
            raise ValueError(f"invalid cache key {key!r}: keys are plain folder names")
        return self.root / key

    def __contains__(self, key: str) -> bool:
        return is_complete(self.path(key))

    def keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and ((p / META_FILE).exists() or (p / PROGRESS_FILE).exists())
        )

    def load(self, key: str, mmap: bool = True) -> FeatureSet:
        """The complete feature set stored under ``key``."""
        if key not in self:
            raise KeyError(f"no complete feature set under key {key!r} in {self.root}")
        return load_featureset(self.path(key), mmap=mmap)

    def entry(self, key: str) -> CacheEntry:
        """Describe one entry (complete or in progress)."""
        folder = self.path(key)
        if (folder / META_FILE).exists():
            meta = read_json(folder / META_FILE)
            n = int(meta.get("num_samples", 0))
            kind = str(meta.get("kind", "features"))
            complete = (
                is_complete(folder)
                if kind == "features"
                else all((folder / f"{a}.npy").exists() for a in ("scores", "preds", "labels"))
            )
            return CacheEntry(
                key=key,
                model=str(meta.get("model", "?")),
                dataset=str(meta.get("dataset", "?")),
                num_samples=n,
                dim=meta.get("dim"),
                size_bytes=_folder_size(folder),
                complete=complete,
                chunks_done=1,
                chunks_total=1,
                path=folder,
                kind=kind,
            )
        info = read_json(folder / PROGRESS_FILE)
        partial = PartialEntry(folder, info["num_samples"], info["chunk_size"], info)
        return CacheEntry(
            key=key,
            model=str(info.get("model", "?")),
            dataset=str(info.get("dataset", "?")),
            num_samples=int(info["num_samples"]),
            dim=info.get("dim"),
            size_bytes=_folder_size(folder),
            complete=False,
            chunks_done=partial.num_chunks - len(partial.missing_chunks()),
            chunks_total=partial.num_chunks,
            path=folder,
        )

    def list(self) -> list[CacheEntry]:
        """Every entry under ``root``, complete or not, sorted by key."""
        return [self.entry(k) for k in self.keys()]

    def clear(self, prefix: str | None = None) -> list[str]:
        """Remove the entries whose key starts with ``prefix`` (every entry when None).

        Returns the removed keys.
        """
        removed = [k for k in self.keys() if prefix is None or k.startswith(prefix)]
        for key in removed:
            shutil.rmtree(self.path(key), ignore_errors=True)
        return removed

    def open(self, key: str, num_samples: int, chunk_size: int, info: dict[str, Any]):
        """Start or resume the entry ``key``: a :class:`PartialEntry` that collects chunks."""
        return PartialEntry(self.path(key), num_samples, chunk_size, info)


class ChunkPlan:
    """Rows ``0..N`` in chunks of ``s = chunk_size`` rows: chunk ``i`` is ``[i*s, (i+1)*s)``."""

    def __init__(self, num_samples: int, chunk_size: int) -> None:
        if num_samples < 1:
            raise ValueError("the dataset is empty: nothing to extract")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of rows, got {chunk_size}")
        self.num_samples = int(num_samples)
        self.chunk_size = int(chunk_size)
        self.num_chunks = -(-self.num_samples // self.chunk_size)

    def bounds(self, i: int) -> tuple[int, int]:
        start = i * self.chunk_size
        return start, min(start + self.chunk_size, self.num_samples)


class MemoryChunks(ChunkPlan):
    """Chunks kept in memory (no cache): the same interface as :class:`PartialEntry`."""

    def __init__(self, num_samples: int, chunk_size: int) -> None:
        super().__init__(num_samples, chunk_size)
        self._chunks: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def missing_chunks(self) -> list[int]:
        return [i for i in range(self.num_chunks) if i not in self._chunks]

    def write(self, i: int, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor):
        self._chunks[i] = (features, logits, labels)

    def finish(self, meta: dict[str, Any]) -> FeatureSet:
        parts = [self._chunks[i] for i in range(self.num_chunks)]
        features, logits, labels = (torch.cat([p[j] for p in parts]) for j in range(3))
        info = dict(meta, dim=int(features.shape[1]), num_classes=int(logits.shape[1]))
        return FeatureSet(features, logits, labels, meta=info)


class PartialEntry(ChunkPlan):
    """A cache folder being filled: finished chunks on disk, consolidated by :meth:`finish`."""

    def __init__(
        self, folder: Path, num_samples: int, chunk_size: int, info: dict[str, Any]
    ) -> None:
        self.folder = Path(folder)
        progress = self.folder / PROGRESS_FILE
        if progress.exists():
            previous = read_json(progress)
            if int(previous.get("num_samples", -1)) == int(num_samples):
                chunk_size = int(previous["chunk_size"])  # resume on the same grid
            else:
                shutil.rmtree(self.folder / CHUNK_DIR, ignore_errors=True)
        super().__init__(num_samples, chunk_size)
        self.info = dict(info, num_samples=self.num_samples, chunk_size=self.chunk_size)

    def start(self) -> None:
        """Create the folder and its ``progress.json`` (idempotent)."""
        (self.folder / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
        write_json(self.folder / PROGRESS_FILE, self.info)

    def chunk_path(self, i: int) -> Path:
        start, stop = self.bounds(i)
        return self.folder / CHUNK_DIR / f"rows_{start:010d}_{stop:010d}.npz"

    def missing_chunks(self) -> list[int]:
        return [i for i in range(self.num_chunks) if not self.chunk_path(i).exists()]

    def write(self, i: int, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor):
        start, stop = self.bounds(i)
        if features.shape[0] != stop - start:
            raise RuntimeError(f"chunk {i} has {features.shape[0]} rows, expected {stop - start}")
        write_chunk(
            self.chunk_path(i),
            features.numpy().astype(np.float32, copy=False),
            logits.numpy().astype(np.float32, copy=False),
            labels.numpy().astype(np.int64, copy=False),
        )

    def finish(self, meta: dict[str, Any]) -> FeatureSet:
        """Merge the chunks into one ``.npy`` per array, write ``meta.json``, drop the chunks.

        When another process extracting the same key finished first, its result is returned.
        """
        if not is_complete(self.folder):
            try:
                self._merge_chunks(meta)
            except FileNotFoundError:
                if not is_complete(self.folder):  # chunks gone, but not merged by another run
                    raise
        return load_featureset(self.folder)

    def _merge_chunks(self, meta: dict[str, Any]) -> None:
        first = read_chunk(self.chunk_path(0))
        targets = [self.folder / f"{name}.npy" for name in ARRAYS]
        temps = [t.with_name(f".{t.name}.{os.getpid()}.tmp") for t in targets]
        try:
            files = [open(t, "wb") for t in temps]
            try:
                for f, sample in zip(files, first, strict=True):
                    header = {
                        "descr": np.lib.format.dtype_to_descr(sample.dtype),
                        "fortran_order": False,
                        "shape": (self.num_samples, *sample.shape[1:]),
                    }
                    np.lib.format.write_array_header_1_0(f, header)
                for i in range(self.num_chunks):
                    parts = first if i == 0 else read_chunk(self.chunk_path(i))
                    for f, part, sample in zip(files, parts, first, strict=True):
                        f.write(np.ascontiguousarray(part, dtype=sample.dtype).tobytes())
                for f in files:
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                for f in files:
                    f.close()
            for tmp, target in zip(temps, targets, strict=True):
                os.replace(tmp, target)
        finally:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
        info = dict(meta)
        info.update(
            num_samples=self.num_samples,
            dim=int(first[0].shape[1]),
            num_classes=int(first[1].shape[1]),
            complete=True,
        )
        write_json(self.folder / META_FILE, info)
        shutil.rmtree(self.folder / CHUNK_DIR, ignore_errors=True)
        (self.folder / PROGRESS_FILE).unlink(missing_ok=True)
