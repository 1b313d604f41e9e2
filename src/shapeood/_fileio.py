"""The one atomic-write helper: write beside the target, fsync, rename over it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from shapeood.errors import disk_error


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], size_hint: int | None = None
) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename.

    A reader (or a process killed mid-write) never sees half a file: the old content stays
    until the rename, and the temporary file is removed on any error. A full or read-only disk
    raises :class:`~shapeood.errors.DiskError` naming ``path`` (and ``size_hint`` bytes).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise disk_error(err, path, size_hint) from err
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path
