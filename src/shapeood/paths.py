"""Where shapeood looks for the offline kit and keeps its feature cache.

``SHAPEOOD_DATA`` points at the offline kit (real images and pretrained weights). When it is
unset, the kit is ``../shared/data`` relative to the working directory if that exists, else
``shared/data`` beside the repository the package is installed from (an editable install), so
the quickstart runs from any folder. ``SHAPEOOD_CACHE`` points at the feature cache; it
defaults to ``~/.cache/shapeood``.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA = Path("..") / "shared" / "data"


# src/shapeood/paths.py -> the repository root, whose sibling ``shared/data`` is the kit.
REPOSITORY = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """The offline kit folder: ``$SHAPEOOD_DATA``, else ``../shared/data`` when it exists,
    else ``../shared/data`` of the package's repository when that exists, else
    ``../shared/data`` (``kit_file`` then says what to set)."""
    env = os.environ.get("SHAPEOOD_DATA")
    if env:
        return Path(env).expanduser()
    if DEFAULT_DATA.is_dir():
        return DEFAULT_DATA
    beside_repository = (REPOSITORY / DEFAULT_DATA).resolve()
    if beside_repository.is_dir():
        return beside_repository
    return DEFAULT_DATA


def kit_file(name: str) -> Path:
    """Path of one file of the offline kit; raises ``FileNotFoundError`` naming the fix."""
    path = data_root() / name
    if not path.exists():
        how = (
            f"SHAPEOOD_DATA={os.environ['SHAPEOOD_DATA']} does not hold it"
            if os.environ.get("SHAPEOOD_DATA")
            else f"SHAPEOOD_DATA is unset and neither ./{DEFAULT_DATA} nor "
            f"{REPOSITORY / DEFAULT_DATA} exists"
        )
        raise FileNotFoundError(
            f"offline kit file {name!r} not found at {path} ({how}): set SHAPEOOD_DATA to the "
            "kit folder, the one with cifar10_test.npz and weights_*.npz"
        )
    return path


def cache_root() -> Path:
    """The feature cache folder (``$SHAPEOOD_CACHE`` or ``~/.cache/shapeood``)."""
    default = Path.home() / ".cache" / "shapeood"
    return Path(os.environ.get("SHAPEOOD_CACHE", default)).expanduser()
