"""Images named on a command line: files, folders, OpenOOD image lists and ``.npz`` archives.

``collect_images(["a.png", "photos/", "list.txt", "set.npz"])`` returns an ``ImageInputs``
dataset yielding ``(image, row)`` with ``image`` a PIL image or a uint8 (3, H, W) tensor and a
display name per row in ``names`` (the file path; ``set.npz[7]`` for archive rows). Folders are
searched recursively, in sorted order; an image list's paths start from ``data_root`` (default
the list's own folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from shapeood.data.sources import IMG_EXTENSIONS, load_rgb, parse_imglist


class ImageInputs(Dataset):
    """Rows from several sources; ``transform`` is applied to each image when set."""

    def __init__(self, transform: Any = None) -> None:
        self.names: list[str] = []
        self._rows: list[tuple[str, Any]] = []  # ("file", path) | ("npz", (path, row))
        self._archives: dict[str, np.ndarray] = {}
        self.transform = transform

    def add_file(self, path: Path, name: str | None = None) -> None:
        self._rows.append(("file", path))
        self.names.append(name or str(path))

    def add_archive(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as archive:
            if "images" not in archive.files:
                raise ValueError(
                    f"{path} has no 'images' array (it has {', '.join(archive.files)}): an image "
                    "archive holds images uint8 (N, H, W, 3)"
                )
            images = archive["images"]
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(
                f"{path}: images must be uint8 (N, H, W, 3) or (N, H, W), got "
                f"{images.dtype} {images.shape}"
            )
        key = str(path)
        self._archives[key] = images
        for i in range(images.shape[0]):
            self._rows.append(("npz", (key, i)))
            self.names.append(f"{path}[{i}]")

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        kind, where = self._rows[i]
        if kind == "file":
            image: Any = load_rgb(where)
        else:
            pixels = self._archives[where[0]][where[1]]
            pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
            image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
            if image.shape[0] == 1:
                image = image.expand(3, -1, -1).contiguous()
        return (self.transform(image) if self.transform is not None else image), i


def collect_images(
    specs: list[str], data_root: str | os.PathLike | None = None, transform: Any = None
) -> ImageInputs:
    """``ImageInputs`` of every image named by ``specs`` (see the module docstring)."""
    inputs = ImageInputs(transform)
    for spec in specs:
        path = Path(spec).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no such image, folder, image list or archive: {spec}")
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
            )
            if not files:
                raise ValueError(
                    f"folder {spec} holds no image files ({', '.join(IMG_EXTENSIONS)})"
                )
            for file in files:
                inputs.add_file(file)
        elif path.suffix.lower() == ".npz":
            inputs.add_archive(path)
        elif path.suffix.lower() == ".txt":
            root = Path(data_root).expanduser() if data_root else path.parent
            samples, _ = parse_imglist(path)
            for relative, _label in samples:
                inputs.add_file(root / relative, name=relative)
        elif path.suffix.lower() in IMG_EXTENSIONS:
            inputs.add_file(path)
        else:
            raise ValueError(
                f"{spec} is not an image ({', '.join(IMG_EXTENSIONS)}), a folder, an image list "
                "(.txt) or an .npz archive"
            )
    if not len(inputs):
        raise ValueError("no images given")
    return inputs
