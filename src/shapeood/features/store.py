"""On-disk format of cache entries: one ``.npy`` per array plus a checksummed ``meta.json``.

Every file is written to a temporary name in the same folder and then renamed with
``os.replace``, so a reader (or a process killed mid-write) never sees half a file; ``meta.json``
is written last, so a folder that has it is complete.

Checksums: ``meta.json`` records, for every array, its dtype, shape and ``crc32`` - the CRC-32
of each 64 MiB block of the array's bytes (computed in threads), folded into one CRC-32 of the
block CRCs - and carries a CRC-32 of its own content (``meta_crc32``). :func:`load_arrays`
verifies all of them, so a truncated, zeroed or edited file raises
:class:`~shapeood.errors.CorruptCacheError` naming the entry instead of serving wrong numbers.
A file verified once is not re-read in the same process while its size, inode and
modification/change times are unchanged. Measured (``benchmarks/bench_trust.py``, 2 CPU cores at
load average 18): verifying a cached 50,000 x 2,048 float32 array (400 MB, page cache) takes
0.86 s, against 0.4 ms to memory-map it unverified and 1.46 s to read it into memory (59 % of a
full read: verification is most of what a cold reload costs, once per process), and a
negligible 0.0006 % of extracting those 50,000 images on the same CPU.

Chunks of a partial entry (``.npz``) store the CRC-32 of their three arrays beside them and are
verified when read.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shapeood._fileio import atomic_write
from shapeood.errors import CorruptCacheError
from shapeood.features.featureset import FeatureSet

ARRAYS = ("features", "logits", "labels")
META_FILE = "meta.json"
BLOCK = 64 << 20  # bytes per checksum block
KIND_FEATURES = "features"

_verified: dict[tuple, str] = {}


# ----------------------------------------------------------------------------- writing


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as indented JSON."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
    atomic_write(path, lambda f: f.write(text), len(text))


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- checksums


def _crc(view: memoryview) -> int:
    return zlib.crc32(view)


def array_checksum(array: np.ndarray) -> int:
    """CRC-32 of the CRC-32s of each 64 MiB block of ``array``'s C-order bytes."""
    data = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    blocks = [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)] or [data]
    if len(blocks) == 1:
        parts = [_crc(blocks[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(len(blocks), os.cpu_count() or 1)) as pool:
            parts = list(pool.map(_crc, blocks))
    return zlib.crc32(np.asarray(parts, dtype="<u4").tobytes())


def _describe(array: np.ndarray) -> dict[str, Any]:
    return {
        "dtype": np.lib.format.dtype_to_descr(array.dtype),
        "shape": list(array.shape),
        "crc32": array_checksum(array),
    }


def _meta_crc(meta: Mapping[str, Any]) -> int:
    body = {k: v for k, v in meta.items() if k != "meta_crc32"}
    return zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode())


def write_meta(folder: Path, meta: Mapping[str, Any]) -> None:
    """Write ``meta.json`` with its own checksum (``meta_crc32``)."""
    info = json.loads(json.dumps(dict(meta), default=str))
    info["meta_crc32"] = _meta_crc(info)
    write_json(Path(folder) / META_FILE, info)


def _corrupt(folder: Path, what: str) -> CorruptCacheError:
    key = folder.name
    return CorruptCacheError(
        f"cache entry {key} is corrupt ({what}) in {folder.parent}; run "
        f"'shapeood cache clear {key}' (or let shapeood recompute it)",
        key=key,
        path=folder,
    )


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """``meta.json`` of an entry, checked against its own checksum."""
    folder = Path(folder)
    try:
        meta = read_json(folder / META_FILE)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise _corrupt(folder, f"{META_FILE} unreadable: {err}") from err
    if not isinstance(meta, dict) or "meta_crc32" not in meta:
        raise _corrupt(folder, f"{META_FILE} has no checksum (written by an older version?)")
    if meta["meta_crc32"] != _meta_crc(meta):
        raise _corrupt(folder, f"{META_FILE} does not match its checksum")
    if not isinstance(meta.get("arrays"), dict):
        raise _corrupt(folder, f"{META_FILE} lists no arrays")
    return meta


def _stat_key(path: Path) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _verify(folder: Path, name: str, array: np.ndarray, expected: Mapping[str, Any]) -> None:
    path = folder / f"{name}.npy"
    if np.lib.format.dtype_to_descr(array.dtype) != expected.get("dtype") or list(
        array.shape
    ) != list(expected.get("shape", [])):
        raise _corrupt(
            folder,
            f"{path.name} is {array.dtype} {tuple(array.shape)}, expected "
            f"{expected.get('dtype')} {tuple(expected.get('shape', []))}",
        )
    stat = _stat_key(path)
    if _verified.get(stat) == expected.get("crc32"):
        return
    if array_checksum(array) != expected.get("crc32"):
        raise _corrupt(folder, f"{path.name} does not match its checksum")
    _verified[stat] = expected["crc32"]


# ----------------------------------------------------------------------------- entries


def save_arrays(
    folder: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> Path:
    """Write ``arrays`` (one ``<name>.npy`` each) and ``meta.json`` (last) into ``folder``.

    ``meta`` gets an ``arrays`` field with every array's dtype, shape and checksum.
    """
    folder = Path(folder)
    described = {}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        described[name] = _describe(array)
        atomic_write(folder / f"{name}.npy", lambda f, a=array: np.save(f, a), array.nbytes)
    write_meta(folder, {**meta, "arrays": described})
    return folder


def load_arrays(
    folder: str | os.PathLike, mmap: bool = True, verify: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and meta of an entry written by :func:`save_arrays`, checksums verified.

    With ``mmap`` the arrays are memory-mapped copy-on-write (in-place changes stay private to
    this process). Raises :class:`~shapeood.errors.CorruptCacheError` naming the entry when a
    file is missing, truncated or does not match its checksum.
    """
    folder = Path(folder)
    if not (folder / META_FILE).exists():
        raise FileNotFoundError(f"no complete cache entry in {folder}: {META_FILE} is missing")
    meta = read_meta(folder)
    arrays = {}
    for name, expected in meta["arrays"].items():
        path = folder / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise _corrupt(folder, f"{path.name} unreadable: {err}") from err
        if verify:
            _verify(folder, name, array, expected)
        arrays[name] = array
    return arrays, meta


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a finished entry (its ``meta.json`` exists)."""
    return (Path(folder) / META_FILE).exists()


def _as_numpy(t: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu").numpy().astype(dtype, copy=False))


def save_featureset(fs: FeatureSet, folder: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``fs`` to ``folder`` (``features.npy``, ``logits.npy``, ``labels.npy``, ``meta.json``).

    ``meta.json`` is written last: a folder that has it is complete.
    """
    arrays = {
        "features": _as_numpy(fs.features, np.float32),
        "logits": _as_numpy(fs.logits, np.float32),
        "labels": _as_numpy(fs.labels, np.int64),
    }
    info = dict(fs.meta if meta is None else meta)
    info.pop("path", None)
    info.update(
        kind=KIND_FEATURES,
        num_samples=len(fs),
        dim=int(fs.features.shape[1]),
        num_classes=int(fs.logits.shape[1]),
        complete=True,
    )
    return save_arrays(folder, arrays, info)


def load_featureset(folder: str | os.PathLike, mmap: bool = True) -> FeatureSet:
    """Read a set written by :func:`save_featureset`, checksums verified.

    With ``mmap`` the arrays are memory-mapped copy-on-write: opening is instant, pages are read
    on first use, and in-place changes stay private to this process.
    """
    folder = Path(folder)
    arrays, meta = load_arrays(folder, mmap=mmap)
    missing = [a for a in ARRAYS if a not in arrays]
    if missing:
        raise _corrupt(folder, f"no {', '.join(missing)} array: not a feature set")
    tensors = {a: torch.from_numpy(arrays[a]) for a in ARRAYS}
    meta["path"] = str(folder)
    try:
        return FeatureSet(tensors["features"], tensors["logits"], tensors["labels"], meta)
    except ValueError as err:
        raise _corrupt(folder, str(err)) from err


# ----------------------------------------------------------------------------- chunks


def write_chunk(path: Path, features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> None:
    """Atomically write one chunk of rows as an uncompressed ``.npz`` with its checksums."""
    crc = np.array([array_checksum(a) for a in (features, logits, labels)], dtype=np.uint32)
    size = features.nbytes + logits.nbytes + labels.nbytes
    atomic_write(
        path,
        lambda f: np.savez(f, features=features, logits=logits, labels=labels, crc32=crc),
        size,
    )


def read_chunk(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk, checksums verified (:class:`~shapeood.errors.CorruptCacheError` if not)."""
    path = Path(path)
    folder = path.parent.parent
    try:
        with np.load(path, allow_pickle=False) as z:
            parts = (z["features"], z["logits"], z["labels"])
            crc = z["crc32"]
    except FileNotFoundError:
        raise
    except Exception as err:  # zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError
        raise _corrupt(folder, f"chunk {path.name} unreadable: {err}") from err
    if [array_checksum(a) for a in parts] != [int(c) for c in crc]:
        raise _corrupt(folder, f"chunk {path.name} does not match its checksum")
    return parts
