"""Content digests of files, cheap to repeat on folders of millions of images.

A file's identity in a cache key is the SHA-256 of its bytes, never its path, name or size:
an image edited in place with the same size changes its dataset's fingerprint, and the same
images copied elsewhere keep it.

Hashing every byte of ImageNet's 1.3 M training images (about 140 GB) for each run would be
too slow, so each digest is remembered, per file, against its *stat identity* (size,
``mtime_ns``, ``ctime_ns`` and inode): any write to a file changes its ``mtime``/``ctime`` (the
``ctime`` cannot be set back by a user), so a remembered digest is only reused for a file
untouched since it was hashed. The memory lives in ``$SHAPEOOD_CACHE/file_hashes.sqlite3``
(and in the process), so

* the first fingerprint of a folder reads each file once (8 threads; about the cost of reading
  the images, which extraction does anyway);
* every later fingerprint costs one ``stat`` and one index lookup per file (measured with
  ``benchmarks/bench_trust.py``: 56 us per file on 2 cores at load average 18, i.e. about 70 s
  for 1.28 M files, against hours of extraction; the first pass read 2,000 files in 1.1 s).

When the cache folder is not writable, digests are remembered in the process only.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shapeood.paths import cache_root

DB_NAME = "file_hashes.sqlite3"
_BATCH = 500

_memo: dict[tuple, str] = {}
_lock = threading.Lock()


def _identity(path: str) -> tuple[str, int, int, int, int]:
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def hash_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes (``"absent:<path>"`` when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return f"absent:{os.fspath(path)}"
    return h.hexdigest()


def _connect() -> sqlite3.Connection | None:
    try:
        root = cache_root()
        root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(root / DB_NAME, timeout=30)
        con.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
            "mtime_ns INTEGER, ctime_ns INTEGER, ino INTEGER, sha256 TEXT)"
        )
        return con
    except (sqlite3.Error, OSError):
        return None


def file_digests(paths: Sequence[str | os.PathLike], threads: int = 8) -> list[str]:
    """SHA-256 of each file of ``paths`` (remembered by stat identity; see the module doc).

    A file that cannot be opened counts as ``"absent:<path>"`` (reading it later fails with a
    clear error; the fingerprint itself never does).
    """
    # abspath, not realpath: realpath costs an lstat per path component, and the stat identity
    # (which follows links) already tells whether a remembered digest still holds.
    resolved = [os.path.abspath(p) for p in paths]
    identities: list[tuple] = []
    result: list[str | None] = []
    for path in resolved:
        try:
            identities.append(_identity(path))
            result.append(_memo.get(identities[-1]))
        except OSError:
            identities.append((path,))
            result.append(f"absent:{path}")
    todo = [i for i, d in enumerate(result) if d is None]
    if not todo:
        return result  # type: ignore[return-value]
    con = _connect()
    if con is not None:
        try:
            for start in range(0, len(todo), _BATCH):
                batch = todo[start : start + _BATCH]
                marks = ",".join("?" * len(batch))
                rows = con.execute(
                    f"SELECT path, size, mtime_ns, ctime_ns, ino, sha256 FROM files "
                    f"WHERE path IN ({marks})",
                    [resolved[i] for i in batch],
                ).fetchall()
                known = {r[0]: (tuple(r[:5]), r[5]) for r in rows}
                for i in batch:
                    hit = known.get(resolved[i])
                    if hit is not None and hit[0] == identities[i]:
                        result[i] = hit[1]
        except sqlite3.Error:
            pass
    missing = [i for i in todo if result[i] is None]
    if missing:
        workers = max(1, min(threads, len(missing)))
        if workers == 1:
            digests = [hash_file(resolved[i]) for i in missing]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                digests = list(pool.map(hash_file, [resolved[i] for i in missing]))
        for i, digest in zip(missing, digests, strict=True):
            result[i] = digest
        rows = [(*identities[i], result[i]) for i in missing if not result[i].startswith("absent:")]
        if con is not None and rows:
            try:
                with con:
                    con.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.Error:
                pass
    if con is not None:
        con.close()
    with _lock:
        for i in todo:
            if not result[i].startswith("absent:"):  # type: ignore[union-attr]
                _memo[identities[i]] = result[i]  # type: ignore[assignment]
    return result  # type: ignore[return-value]


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of one file's bytes (remembered by stat identity)."""
    return file_digests([Path(path)])[0]
