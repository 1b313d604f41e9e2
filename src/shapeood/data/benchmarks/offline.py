"""``cifar10_offline``: the offline kit (CIFAR-10 JPEG copy vs TinyImageNet, MNIST, Textures).

ID val = every 10th image of each class of ``cifar10_test.npz`` (1000 rows), ID test = the
other 9000; near TIN and the OOD val set are the rows of ``tinyimagenet_val_32.npz`` named by
OpenOOD's ``test_tin.txt`` / ``val_tin.txt``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from shapeood import paths
from shapeood.data.benchmarks.registry import register_benchmark
from shapeood.data.benchmarks.spec import BenchmarkSpec, MissingDataError, SourceSpec
from shapeood.data.sources import parse_imglist

OFFLINE_VAL_EVERY = 10  # ID val = every 10th image of each class (positions 0, 10, ..., 990)
TIN_ROW = re.compile(r"^tin/val/images/val_(\d+)\.JPEG$")
OFFLINE_FILES = {
    "id": "cifar10_test.npz",
    "train": "cifar10_train_subset.npz",
    "tin": "tinyimagenet_val_32.npz",
    "mnist": "mnist_test.npz",
    "texture": "dtd_subset_32.npz",
    "test_tin": "openood_imglists/cifar10/test_tin.txt",
    "val_tin": "openood_imglists/cifar10/val_tin.txt",
}


def holdout_rows(
    labels: np.ndarray, every: int = OFFLINE_VAL_EVERY
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (val, test): val = every ``every``-th row of each class, in row order.

    For ``cifar10_test.npz`` (1000 images per class) this holds out 100 per class (1000 rows)
    and leaves 9000 for the test, the sizes OpenOOD uses.

    >>> val, test = holdout_rows(np.array([0, 1, 0, 1, 0, 1]), every=2)
    >>> val.tolist(), test.tolist()
    ([0, 1, 4, 5], [2, 3])
    """
    labels = np.asarray(labels)
    position = np.zeros(labels.shape[0], dtype=np.int64)
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        position[rows] = np.arange(rows.size)
    is_val = position % every == 0
    return np.flatnonzero(is_val), np.flatnonzero(~is_val)


def tin_rows(imglist: str | os.PathLike) -> tuple[int, ...]:
    """Rows of ``tinyimagenet_val_32.npz`` named by an OpenOOD TIN list (val_<i>.JPEG -> i)."""
    samples, _ = parse_imglist(imglist)
    rows = []
    for relative, _ in samples:
        match = TIN_ROW.match(relative)
        if match is None:
            raise ValueError(f"{imglist}: {relative!r} is not a tin/val/images/val_<i>.JPEG path")
        rows.append(int(match.group(1)))
    return tuple(rows)


def _npz(key: str, rows: Any = None, ood: bool = False) -> SourceSpec:
    return SourceSpec(
        "npz",
        OFFLINE_FILES[key],
        rows=None if rows is None else tuple(int(r) for r in rows),
        label_override=-1 if ood else None,
    )


@register_benchmark
def cifar10_offline(root: Path | None = None) -> BenchmarkSpec:
    """offline kit: ID CIFAR-10 JPEG copy (9000 test / 1000 val), near TIN, far MNIST + Textures"""
    root = paths.data_root() if root is None else Path(root)
    missing = [f"{root / f}" for f in OFFLINE_FILES.values() if not (root / f).is_file()]
    if missing:
        raise MissingDataError(
            "cifar10_offline",
            missing,
            str(root),
            "Set SHAPEOOD_DATA (or data_root=) to the offline kit folder.",
        )
    with np.load(root / OFFLINE_FILES["id"], allow_pickle=False) as archive:
        val_rows, test_rows = holdout_rows(archive["labels"])
    return BenchmarkSpec(
        name="cifar10_offline",
        family="cifar",
        protocol="openood",
        fpr_convention="openood",
        resize=32,
        crop=32,
        num_classes=10,
        id_test=_npz("id", test_rows),
        id_val=_npz("id", val_rows),
        id_train=_npz("train"),
        ood_val=_npz("tin", tin_rows(root / OFFLINE_FILES["val_tin"]), ood=True),
        near={"tin": _npz("tin", tin_rows(root / OFFLINE_FILES["test_tin"]), ood=True)},
        far={"mnist": _npz("mnist", ood=True), "texture": _npz("texture", ood=True)},
        description=(
            "offline kit: ID CIFAR-10 (JPEG copy; 9000 test, 1000 held-out val = every 10th "
            "image per class), near TIN (OpenOOD test_tin rows), far MNIST + Textures subset"
        ),
    )
