"""Write PNG files from the offline kit's arrays, laid out as examples/image_folders.yaml expects.

    python examples/make_image_folders.py OUT [--per-set N]

OUT/cifar10/{test,val}/CLASS/*.png (ID, class folders), OUT/images/{tin,tin_val,mnist}/*.png
listed in OUT/lists/{tin,ood_val,mnist}.txt (OpenOOD image lists: 'path label' per line), and
OUT/textures/CLASS/*.png. Rows are evenly spaced; ID val rows come from the training subset.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image


def _kit() -> Path:
    root = Path(os.environ.get("SHAPEOOD_DATA", Path("..") / "shared" / "data")).expanduser()
    if not (root / "cifar10_test.npz").is_file():
        raise SystemExit(f"offline kit not found at {root}: set SHAPEOOD_DATA to the kit folder")
    return root


def _rows(n_total: int, n: int) -> np.ndarray:
    return np.linspace(0, n_total - 1, num=min(n, n_total)).round().astype(int)


def _arrays(kit: Path, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(kit / name) as z:
        rows = _rows(len(z["labels"]), n)
        return z["images"][rows], z["labels"][rows]


def _class_folders(out: Path, images: np.ndarray, labels: np.ndarray) -> None:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = out / f"class{int(label):03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def _listed(out: Path, folder: str, images: np.ndarray, listing: Path) -> None:
    (out / "images" / folder).mkdir(parents=True, exist_ok=True)
    listing.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, image in enumerate(images):
        rel = f"{folder}/{i:05d}.png"
        Image.fromarray(image).save(out / "images" / rel)
        lines.append(f"{rel} -1")
    listing.write_text("\n".join(lines) + "\n")


def write_image_folders(out: str | Path, per_set: int = 200, kit: Path | None = None) -> Path:
    """Write every set of examples/image_folders.yaml under ``out``; returns ``out``."""
    out, kit = Path(out), kit or _kit()
    _class_folders(out / "cifar10" / "test", *_arrays(kit, "cifar10_test.npz", per_set))
    _class_folders(out / "cifar10" / "val", *_arrays(kit, "cifar10_train_subset.npz", per_set))
    tin, _ = _arrays(kit, "tinyimagenet_val_32.npz", 2 * per_set)
    _listed(out, "tin", tin[0::2], out / "lists" / "tin.txt")
    _listed(out, "tin_val", tin[1::2], out / "lists" / "ood_val.txt")
    _listed(out, "mnist", _arrays(kit, "mnist_test.npz", per_set)[0], out / "lists" / "mnist.txt")
    _class_folders(out / "textures", *_arrays(kit, "dtd_subset_32.npz", per_set))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write (created)")
    parser.add_argument("--per-set", type=int, default=200, help="images per set (default 200)")
    args = parser.parse_args()
    print(f"wrote {write_image_folders(args.out, args.per_set)}")


if __name__ == "__main__":
    main()
