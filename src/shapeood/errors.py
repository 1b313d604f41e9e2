"""shapeood's exceptions and warnings: one small hierarchy, so the CLI maps them in one place.

Every error a user can cause is a :class:`ShapeoodError` (a ``ValueError``) whose message is
one line naming the file, key or option at fault and the fix. The Python API raises them as
they are; the ``shapeood`` command prints ``shapeood: error: <message>`` and exits with 2.

* :class:`ShapeoodError` - bad input in general (a parameter, a value, a combination).
* :class:`BadFileError` - a file that exists but cannot be read (corrupt or truncated ``.npz``,
  ``.pth``, image, JSON, YAML/TOML); ``.path`` names it.
* :class:`CorruptCacheError` - a cache entry whose checksum (or meta file) does not match;
  ``.key`` names it and the message names ``shapeood cache clear KEY``.
* :class:`DiskError` - the disk refused a write (full or read-only); ``.path`` names where.
* :class:`DeviceError` - a device that is not there (``--device cuda`` without a GPU).

Warnings: :class:`DegenerateResultWarning` (a number that is computed correctly but means
little: constant scores, random weights, all-zero features) and :class:`CacheWarning` (a
corrupt cache entry that is being recomputed).
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "BadFileError",
    "CacheWarning",
    "CorruptCacheError",
    "DegenerateResultWarning",
    "DeviceError",
    "DiskError",
    "ShapeoodError",
    "disk_error",
    "reading",
]


class ShapeoodError(ValueError):
    """An error the user can fix; the message says how."""


class BadFileError(ShapeoodError):
    """A file that exists but cannot be read as what it should be."""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


class CorruptCacheError(BadFileError):
    """A cache entry that fails its checksum or whose meta file is unreadable."""

    def __init__(self, message: str, key: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message, path)
        self.key = key


class DiskError(ShapeoodError):
    """A write refused by the disk (no space left, read-only file system, no permission)."""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


class DeviceError(ShapeoodError):
    """A device that this machine does not have."""


class DegenerateResultWarning(UserWarning):
    """A result that is computed correctly but carries no information (e.g. constant scores)."""


class CacheWarning(UserWarning):
    """A problem in the cache that shapeood repairs by itself (a corrupt entry, recomputed)."""


_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def disk_error(err: OSError, path: str | os.PathLike, needed_bytes: int | None = None) -> OSError:
    """``err`` as a :class:`DiskError` naming ``path`` and the space needed, when it is one.

    Other OS errors are returned unchanged (the caller re-raises them).
    """
    if err.errno not in _DISK_ERRNOS:
        return err
    target = Path(path)
    parts = [] if needed_bytes is None else [f"{_human(needed_bytes)} needed"]
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            parts.append(f"{_human(shutil.disk_usage(_existing_parent(target)).free)} free")
        except OSError:
            pass
        detail = f" ({', '.join(parts)})" if parts else ""
        return DiskError(
            f"no space left on the disk holding {target}{detail}: free some space or point "
            "SHAPEOOD_CACHE / --cache-dir / --out at a larger disk",
            target,
        )
    detail = f" ({', '.join(parts)})" if parts else ""
    return DiskError(
        f"cannot write {target}{detail}: {err.strerror or 'permission denied'}; choose a "
        "writable folder (SHAPEOOD_CACHE, --cache-dir, --out) or fix its permissions",
        target,
    )


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _reason(err: BaseException) -> str:
    """A short reason for a read failure, without advice that would be unsafe to follow."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "weights_only" in str(err) or type(err).__name__ == "UnpicklingError":
        return "it is not a plain file of tensors (or it is damaged)"
    if "central directory" in text or "zip archive" in text or type(err).__name__ == "BadZipFile":
        return "truncated or not a valid archive"
    return text[:200]


@contextmanager
def reading(path: str | os.PathLike, what: str = "file", fix: str = "") -> Iterator[None]:
    """Turn any failure to parse ``path`` into one :class:`BadFileError` naming it.

    ``FileNotFoundError`` and :class:`ShapeoodError` pass through unchanged; ``fix`` is appended
    (e.g. "re-download it", "or pass --no-resume").
    """
    try:
        yield
    except (FileNotFoundError, ShapeoodError):
        raise
    except (OSError, ValueError, EOFError, RuntimeError, KeyError, TypeError, AttributeError,
            ImportError, IndexError, UnicodeDecodeError, pickle.UnpicklingError,
            zipfile.BadZipFile) as err:  # fmt: skip
        if isinstance(err, OSError) and err.errno in _DISK_ERRNOS:
            raise
        tail = f"; {fix}" if fix else ""
        raise BadFileError(
            f"cannot read {what} {os.fspath(path)}: {_reason(err)}{tail}", path
        ) from err
