"""Where shapeood looks for the offline kit and keeps its feature cache.

``SHAPEOOD_DATA`` points at the offline kit (real images and pretrained weights); it defaults
to ``../shared/data`` relative to the working directory. ``SHAPEOOD_CACHE`` points at the
feature cache; it defaults to ``~/.cache/shapeood``.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA = Path("..") / "shared" / "data"


def data_root() -> Path:
    """The offline kit folder (``$SHAPEOOD_DATA`` or ``../shared/data``)."""
    return Path(os.environ.get("SHAPEOOD_DATA", DEFAULT_DATA)).expanduser()


def kit_file(name: str) -> Path:
    """Path of one file of the offline kit; raises ``FileNotFoundError`` naming the fix."""
    path = data_root() / name
    if not path.exists():
        raise FileNotFoundError(
            f"offline kit file {name!r} not found at {path}. Set SHAPEOOD_DATA to the folder "
            "that holds the kit (the one with cifar10_test.npz and the weights_*.npz files)."
        )
    return path


def cache_root() -> Path:
    """The feature cache folder (``$SHAPEOOD_CACHE`` or ``~/.cache/shapeood``)."""
    default = Path.home() / ".cache" / "shapeood"
    return Path(os.environ.get("SHAPEOOD_CACHE", default)).expanduser()
