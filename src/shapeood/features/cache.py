"""The cache: one folder per content key, filled chunk by chunk, resumable, checksummed.

Layout of ``<root>/<key>/``::

    progress.json            while extracting: rows, chunk size, key components
    chunks/rows_<a>_<b>.npz  finished chunks (each written atomically, with its CRC-32s)
    <array>.npy ... meta.json   once complete (meta.json, with every checksum, written last)

An extraction killed at any point leaves only whole chunks behind; the next run computes only
the missing ones. ``root`` defaults to ``shapeood.paths.cache_root() / "features"``.

Entries have a ``kind``: ``"features"`` (what :func:`shapeood.extract` writes) or any other
name a producer chooses (input-perturbation scores, e.g. ODIN's). Producers of other kinds use
the small API :meth:`FeatureCache.put` (atomic, checksummed), :meth:`FeatureCache.get`
(verified; ``None`` when absent or corrupt-and-removed), :meth:`FeatureCache.add_name`; ``list``,
``clear`` and ``shapeood cache list|clear`` then show and remove them like features::

    cache = FeatureCache(root)
    cache.put(key, {"scores": s, "preds": p}, {"kind": "odin", "model": m, "dataset": d})
    arrays, meta = cache.get(key)          # or None, then compute and put

A corrupt entry (a file that fails its checksum, an unreadable meta, chunk or progress file) is
reported in one line naming it (:class:`~shapeood.errors.CacheWarning`) and recomputed, or,
with ``recompute=False``, raises :class:`~shapeood.errors.CorruptCacheError` naming
``shapeood cache clear KEY``.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shapeood.errors import CacheWarning, CorruptCacheError, ShapeoodError
from shapeood.features.featureset import FeatureSet
from shapeood.features.store import (
    ARRAYS,
    KIND_FEATURES,
    META_FILE,
    array_checksum,
    is_complete,
    load_arrays,
    load_featureset,
    read_chunk,
    read_json,
    read_meta,
    save_arrays,
    write_chunk,
    write_json,
    write_meta,
)
from shapeood.paths import cache_root

PROGRESS_FILE = "progress.json"
CHUNK_DIR = "chunks"


def default_cache_dir() -> Path:
    """``$SHAPEOOD_CACHE/features`` (``~/.cache/shapeood/features`` by default)."""
    return cache_root() / "features"


@dataclass(frozen=True)
class CacheEntry:
    """One cached (or partly cached, or corrupt) entry, as listed by :meth:`FeatureCache.list`.

    ``state`` is ``"complete"``, ``"partial"`` or ``"corrupt"`` (then ``problem`` says why);
    ``names`` are every dataset name the entry was used under.
    """

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
    kind: str = KIND_FEATURES
    names: tuple[str, ...] = ()
    state: str = "complete"
    problem: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def _folder_size(folder: Path) -> int:
    total = 0
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def _listing_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` for listing: checked (features, ``put``), or as written by another producer.

    Producers with their own format (``features/perturbation.py`` for ODIN) verify their arrays
    themselves; their meta has a ``kind`` other than ``"features"`` and no ``meta_crc32``.
    """
    try:
        return read_meta(folder)
    except CorruptCacheError:
        meta = read_json(folder / META_FILE)
        if isinstance(meta, dict) and meta.get("kind", KIND_FEATURES) != KIND_FEATURES:
            if "meta_crc32" not in meta:
                return meta
        raise


_RECOMPUTE_DEFAULT = True


def set_recompute_default(recompute: bool) -> None:
    """Default for corrupt entries in ``extract``/``get`` (False: the CLI's --no-recompute)."""
    global _RECOMPUTE_DEFAULT
    _RECOMPUTE_DEFAULT = bool(recompute)


def recompute_default() -> bool:
    return _RECOMPUTE_DEFAULT


def report_corrupt(err: CorruptCacheError, recompute: bool | None = True) -> None:
    """One line about a corrupt entry (a :class:`CacheWarning`), or re-raise it."""
    if recompute is None:
        recompute = _RECOMPUTE_DEFAULT
    if not recompute:
        base = str(err).split("; run 'shapeood cache clear", 1)[0]
        raise CorruptCacheError(
            f"{base}; recomputing is off: run 'shapeood cache clear {err.key}' (or drop "
            "--no-recompute / recompute=False) and run again",
            key=err.key,
            path=err.path,
        ) from err
    base = str(err).split("; run 'shapeood cache clear", 1)[0]
    warnings.warn(f"{base}; recomputing it", CacheWarning, stacklevel=3)


class FeatureCache:
    """A folder of cache entries keyed by content (see :mod:`shapeood.features.keys`).

    ``list()`` describes every entry, ``load(key)`` reopens a complete feature set,
    ``put``/``get`` store and read entries of any kind, ``clear(prefix)`` removes entries whose
    key starts with ``prefix`` (all of them only with ``prefix=None``).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r})"

    def path(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key.strip() in ("", ".", ".."):
            raise ShapeoodError(f"invalid cache key {key!r}: keys are plain folder names")
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

    # ------------------------------------------------------------------ reading and writing

    def load(self, key: str, mmap: bool = True) -> FeatureSet:
        """The complete feature set stored under ``key`` (checksums verified)."""
        if key not in self:
            raise KeyError(f"no complete feature set under key {key!r} in {self.root}")
        return load_featureset(self.path(key), mmap=mmap)

    def put(
        self, key: str, arrays: Mapping[str, Any], meta: Mapping[str, Any], kind: str | None = None
    ) -> Path:
        """Store ``arrays`` (numpy or torch, by name) under ``key``: atomic and checksummed.

        ``kind`` (or ``meta["kind"]``) names what the entry is; ``meta`` must be JSON-able.
        """
        info = dict(meta)
        info["kind"] = kind or info.get("kind") or KIND_FEATURES
        info.setdefault("names", [info["dataset"]] if info.get("dataset") else [])
        info["complete"] = True
        numpy_arrays = {
            name: (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
            for name, a in arrays.items()
        }
        if numpy_arrays:
            first = next(iter(numpy_arrays.values()))
            info.setdefault("num_samples", int(first.shape[0]) if first.ndim else 1)
        return save_arrays(self.path(key), numpy_arrays, info)

    def get(
        self, key: str, mmap: bool = True, recompute: bool | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """``(arrays, meta)`` stored under ``key``, verified; None when absent.

        A corrupt entry is reported (one line), removed and None returned, so the caller
        recomputes it; with ``recompute=False`` it raises ``CorruptCacheError`` instead.
        """
        folder = self.path(key)
        if not is_complete(folder):
            return None
        try:
            return load_arrays(folder, mmap=mmap)
        except CorruptCacheError as err:
            report_corrupt(err, recompute)
            self.remove(key)
            return None

    def add_name(self, key: str, name: str) -> None:
        """Record that entry ``key`` was used under the dataset name ``name`` (metadata only)."""
        folder = self.path(key)
        try:
            meta = read_meta(folder)
        except (OSError, CorruptCacheError):
            return
        names = list(meta.get("names") or ([meta["dataset"]] if meta.get("dataset") else []))
        if name and name not in names:
            meta["names"] = [*names, name]
            try:
                write_meta(folder, meta)
            except (OSError, ShapeoodError):
                pass  # a read-only cache still serves its entries

    def remove(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)

    # ------------------------------------------------------------------ listing and clearing

    def entry(self, key: str) -> CacheEntry:
        """Describe one entry (complete, in progress, or corrupt: never raises for content)."""
        folder = self.path(key)
        try:
            return self._entry(key, folder)
        except (OSError, ValueError, KeyError, TypeError) as err:
            return CacheEntry(
                key=key, model="?", dataset="?", num_samples=0, dim=None,
                size_bytes=_folder_size(folder), complete=False, chunks_done=0, chunks_total=0,
                path=folder, kind="?", state="corrupt",
                problem=str(err).split(" in ", 1)[0] if isinstance(err, CorruptCacheError)
                else f"{type(err).__name__}: {err}",
            )  # fmt: skip

    def _entry(self, key: str, folder: Path) -> CacheEntry:
        if (folder / META_FILE).exists():
            meta = _listing_meta(folder)
            names = tuple(meta.get("names") or ([meta["dataset"]] if meta.get("dataset") else []))
            return CacheEntry(
                key=key,
                model=str(meta.get("model", "?")),
                dataset=str(meta.get("dataset", "?")),
                num_samples=int(meta.get("num_samples", 0)),
                dim=meta.get("dim"),
                size_bytes=_folder_size(folder),
                complete=True,
                chunks_done=1,
                chunks_total=1,
                path=folder,
                kind=str(meta.get("kind", KIND_FEATURES)),
                names=names,
                extra={k: meta[k] for k in ("method", "params") if k in meta},
            )
        info = read_json(folder / PROGRESS_FILE)
        plan = ChunkPlan(int(info["num_samples"]), int(info["chunk_size"]))
        done = sum(1 for i in range(plan.num_chunks) if _chunk_path(folder, plan, i).exists())
        return CacheEntry(
            key=key,
            model=str(info.get("model", "?")),
            dataset=str(info.get("dataset", "?")),
            num_samples=plan.num_samples,
            dim=info.get("dim"),
            size_bytes=_folder_size(folder),
            complete=False,
            chunks_done=done,
            chunks_total=plan.num_chunks,
            path=folder,
            kind=str(info.get("kind", KIND_FEATURES)),
            names=tuple(info.get("names") or [info.get("dataset", "?")]),
            state="partial",
        )

    def list(self, kind: str | None = None) -> list[CacheEntry]:
        """Every entry under ``root`` (of ``kind`` when given), complete or not, sorted by key."""
        entries = [self.entry(k) for k in self.keys()]
        return [e for e in entries if kind is None or e.kind == kind]

    def kinds(self) -> list[str]:
        """The kinds of entry present (``"features"``, ``"odin"``, ...)."""
        return sorted({e.kind for e in self.list()})

    def matching(self, prefix: str | None) -> list[str]:
        """Keys that ``clear(prefix)`` would remove (every key when ``prefix`` is None)."""
        if prefix is None:
            return self.keys()
        return [k for k in self.keys() if k.startswith(prefix)]

    def clear(self, prefix: str | None = None, kind: str | None = None) -> list[str]:
        """Remove the entries whose key starts with ``prefix`` (every entry when None).

        An empty or blank ``prefix`` is refused (``ShapeoodError``): it would match everything.
        Returns the removed keys.
        """
        if prefix is not None and not prefix.strip():
            raise ShapeoodError(
                f"refusing to clear with the blank key {prefix!r}: it matches every entry; "
                "name the key, or clear everything explicitly (prefix=None / --all)"
            )
        removed = self.matching(prefix)
        if kind is not None:
            kinds = {e.key: e.kind for e in self.list()}
            removed = [k for k in removed if kinds.get(k) == kind]
        for key in removed:
            self.remove(key)
        return removed

    def open(
        self, key: str, num_samples: int, chunk_size: int, info: dict[str, Any],
        recompute: bool | None = None,
    ) -> PartialEntry:  # fmt: skip
        """Start or resume the entry ``key``: a :class:`PartialEntry` that collects chunks."""
        return PartialEntry(self.path(key), num_samples, chunk_size, info, recompute=recompute)


class ChunkPlan:
    """Rows ``0..N`` in chunks of ``s = chunk_size`` rows: chunk ``i`` is ``[i*s, (i+1)*s)``."""

    def __init__(self, num_samples: int, chunk_size: int) -> None:
        if num_samples < 1:
            raise ShapeoodError("the dataset is empty: nothing to extract")
        if chunk_size < 1:
            raise ShapeoodError(f"chunk_size must be a positive number of rows, got {chunk_size}")
        self.num_samples = int(num_samples)
        self.chunk_size = int(chunk_size)
        self.num_chunks = -(-self.num_samples // self.chunk_size)

    def bounds(self, i: int) -> tuple[int, int]:
        start = i * self.chunk_size
        return start, min(start + self.chunk_size, self.num_samples)


def _chunk_path(folder: Path, plan: ChunkPlan, i: int) -> Path:
    start, stop = plan.bounds(i)
    return folder / CHUNK_DIR / f"rows_{start:010d}_{stop:010d}.npz"


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
    """A cache folder being filled: finished chunks on disk, consolidated by :meth:`finish`.

    An unreadable ``progress.json`` or a chunk that fails its checksum is reported and dropped
    (its rows are recomputed), or raises ``CorruptCacheError`` when ``recompute`` is False.
    """

    def __init__(
        self,
        folder: Path,
        num_samples: int,
        chunk_size: int,
        info: dict[str, Any],
        recompute: bool | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.recompute = recompute
        progress = self.folder / PROGRESS_FILE
        if progress.exists():
            try:
                previous = read_json(progress)
                same = int(previous.get("num_samples", -1)) == int(num_samples)
                previous_chunk = int(previous["chunk_size"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                self._corrupt(f"{PROGRESS_FILE} unreadable: {err}")
                same = False
            if same:
                chunk_size = previous_chunk  # resume on the same grid
            else:
                shutil.rmtree(self.folder / CHUNK_DIR, ignore_errors=True)
        super().__init__(num_samples, chunk_size)
        self.info = dict(info, num_samples=self.num_samples, chunk_size=self.chunk_size)

    def _corrupt(self, what: str) -> None:
        key = self.folder.name
        err = CorruptCacheError(
            f"cache entry {key} is corrupt ({what}) in {self.folder.parent}; run "
            f"'shapeood cache clear {key}' (or let shapeood recompute it)",
            key=key,
            path=self.folder,
        )
        report_corrupt(err, self.recompute)

    def start(self) -> None:
        """Create the folder and its ``progress.json``; drop chunks that fail their checksum."""
        (self.folder / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
        write_json(self.folder / PROGRESS_FILE, self.info)
        for i in range(self.num_chunks):
            path = self.chunk_path(i)
            if not path.exists():
                continue
            try:
                read_chunk(path)
            except CorruptCacheError as err:
                report_corrupt(err, self.recompute)
                path.unlink(missing_ok=True)

    def chunk_path(self, i: int) -> Path:
        return _chunk_path(self.folder, self, i)

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
        from shapeood.errors import disk_error

        first = read_chunk(self.chunk_path(0))
        targets = [self.folder / f"{name}.npy" for name in ARRAYS]
        temps = [t.with_name(f".{t.name}.{os.getpid()}.tmp") for t in targets]
        row_bytes = sum(int(np.prod(a.shape[1:])) * a.dtype.itemsize for a in first)
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
            described = {}
            for name, tmp in zip(ARRAYS, temps, strict=True):
                array = np.load(tmp, mmap_mode="r", allow_pickle=False)
                described[name] = {
                    "dtype": np.lib.format.dtype_to_descr(array.dtype),
                    "shape": list(array.shape),
                    "crc32": array_checksum(array),
                }
                del array
            for tmp, target in zip(temps, targets, strict=True):
                os.replace(tmp, target)
        except OSError as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise disk_error(err, self.folder, row_bytes * self.num_samples) from err
        finally:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
        info = dict(meta)
        info.pop("path", None)
        info.update(
            kind=KIND_FEATURES,
            num_samples=self.num_samples,
            dim=int(first[0].shape[1]),
            num_classes=int(first[1].shape[1]),
            complete=True,
            arrays=described,
        )
        info.setdefault("names", [meta["dataset"]] if meta.get("dataset") else [])
        write_meta(self.folder, info)
        shutil.rmtree(self.folder / CHUNK_DIR, ignore_errors=True)
        (self.folder / PROGRESS_FILE).unlink(missing_ok=True)


__all__ = [
    "CacheEntry",
    "ChunkPlan",
    "FeatureCache",
    "MemoryChunks",
    "PartialEntry",
    "default_cache_dir",
    "report_corrupt",
    "save_arrays",
]
