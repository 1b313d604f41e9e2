"""Image sources: torch ``Dataset``s that yield ``(image, label)``.

* ``ArrayDataset`` - images stored in an ``.npz`` archive (``images`` uint8 (N, H, W, 3),
  ``labels`` (N,)); yields uint8 ``(3, H, W)`` tensors.
* ``ImageListDataset`` - an OpenOOD image list (``<relative path> <label>`` per line) under a root.
* ``ImageFolderDataset`` - torchvision-style class folders.
* ``torchvision_dataset`` - CIFAR-10/100, SVHN, MNIST, DTD, Places365, ... through torchvision.

Every source has ``.name``, ``.transform`` (applied to the image when not ``None``), ``.labels``
(int64 array, no image decoding) and ``.fingerprint()``: a digest of the source's content (the
bytes of its files, in order, with the labels, the row subset and the label override; never a
path or a name) used as a cache key (see :mod:`shapeood.data.content` for why it is cheap).
File images are decoded with Pillow, converted to RGB; truncated files are tolerated; a corrupt
or missing file raises ``BadImageError`` naming the path (or, with ``skip_bad=True``, is left
out at construction and counted in ``.skipped``). When the transform gives the same output on
pixels as on the PIL image (``decode.transform_on_pixels``) and torchvision decodes the file to
exactly Pillow's pixels, the decoded ``uint8 (3, H, W)`` tensor goes to it directly
(:mod:`shapeood.data.decode`).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile
from torch.utils.data import Dataset

from shapeood.data.content import file_digest, file_digests
from shapeood.data.decode import pixels_for
from shapeood.errors import BadFileError, reading

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

Transform = Callable[[Any], Any]


_SKIP_BAD_DEFAULT = False


def set_skip_bad_default(skip: bool) -> None:
    """Make every image-file source skip unreadable images (the CLI's ``--skip-bad``)."""
    global _SKIP_BAD_DEFAULT
    _SKIP_BAD_DEFAULT = bool(skip)


class BadImageError(BadFileError):
    """An image file that cannot be read (missing, corrupt or not an image); ``.path`` names it."""


# ----------------------------------------------------------------------------- image loading

_truncated_lock = threading.Lock()
_truncated_users = 0
_truncated_saved = False


@contextmanager
def allow_truncated_images() -> Iterator[None]:
    """Let Pillow decode truncated files (missing bytes become grey) inside this block only.

    Re-entrant and thread safe: the global Pillow flag is restored when the last user leaves.
    """
    global _truncated_users, _truncated_saved
    with _truncated_lock:
        if _truncated_users == 0:
            _truncated_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = True
        _truncated_users += 1
    try:
        yield
    finally:
        with _truncated_lock:
            _truncated_users -= 1
            if _truncated_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _truncated_saved


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode one image file to an RGB ``PIL.Image``; ``BadImageError`` names the path."""
    try:
        with allow_truncated_images(), open(path, "rb") as handle:
            image = Image.open(handle)
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadImageError(
            f"cannot read image {os.fspath(path)}: {err}. Replace the file, or pass "
            "skip_bad=True (--skip-bad) to leave unreadable images out (counted in .skipped)",
            path,
        ) from err


def load_transformed(path: str | os.PathLike, transform: Transform | None) -> Any:
    """``transform(load_rgb(path))`` (the PIL image when ``transform`` is None), bit for bit;
    the decoded pixels skip the PIL image when ``transform`` gives the same output on them
    (``shapeood.data.decode.pixels_for``)."""
    if transform is not None:
        pixels = pixels_for(path, transform)
        if pixels is not None:
            return transform(pixels)
    image = load_rgb(path)
    return image if transform is None else transform(image)


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def _stat_key(path: str) -> tuple[str, int, int, int, int]:
    """Path, size, inode and modification/change times: a memo key, never an identity."""
    stat = os.stat(path)
    return (path, stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)


def _check_override(label_override: int | None) -> int | None:
    if label_override is None:
        return None
    if isinstance(label_override, bool) or not isinstance(label_override, (int, np.integer)):
        raise ValueError(f"label_override must be an int (e.g. -1 for OOD), got {label_override!r}")
    return int(label_override)


class _Source(Dataset):
    """Shared behaviour: name, transform, label override, repr."""

    name: str
    transform: Transform | None
    label_override: int | None

    def _finish(self, image: Any, label: int) -> tuple[Any, int]:
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)})"


# ----------------------------------------------------------------------------- npz arrays

_array_cache: OrderedDict[tuple[Any, str], np.ndarray] = OrderedDict()
_ARRAY_CACHE_SIZE = 6


def _npz_array(path: Path, key: str) -> np.ndarray:
    """One array of an ``.npz`` file, loaded once per process (small LRU cache)."""
    resolved = os.path.realpath(path)
    cache_key = (_stat_key(resolved), key)
    if cache_key in _array_cache:
        _array_cache.move_to_end(cache_key)
        return _array_cache[cache_key]
    with reading(path, "image archive"), np.load(resolved, allow_pickle=False) as archive:
        if key not in archive.files:
            raise ValueError(
                f"{path} has no array {key!r} (it has {', '.join(archive.files)}); an image "
                "archive needs 'images' (N, H, W, 3) uint8 and 'labels' (N,)"
            )
        with reading(path, "image archive"):
            array = archive[key]
    _array_cache[cache_key] = array
    while len(_array_cache) > _ARRAY_CACHE_SIZE:
        _array_cache.popitem(last=False)
    return array


class ArrayDataset(_Source):
    """Images held in arrays: an ``.npz`` file or ``{"images": ..., "labels": ...}``.

    ``images`` uint8 (N, H, W, 3) (or (N, H, W) grey, repeated to 3 channels) are yielded as
    uint8 ``(3, H, W)`` tensors, then ``transform``. ``indices`` keeps a subset of rows (in that
    order); ``label_override`` replaces every label (``-1`` for OOD). Images are read from the file
    on first access only. ``fingerprint()`` = digest of the file's bytes + indices + override.
    """

    def __init__(
        self,
        path_or_arrays: str | os.PathLike | dict[str, Any] | tuple[Any, Any],
        transform: Transform | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        name: str | None = None,
        label_override: int | None = None,
    ) -> None:
        self.transform = transform
        self.label_override = _check_override(label_override)
        self._arrays: dict[str, np.ndarray] | None = None
        if isinstance(path_or_arrays, (str, os.PathLike)):
            self.path: Path | None = Path(path_or_arrays)
            if not self.path.is_file():
                raise FileNotFoundError(f"image archive not found: {self.path}")
            default_name = self.path.stem
            all_labels = _npz_array(self.path, "labels")
        else:
            self.path = None
            images, labels = (
                (path_or_arrays["images"], path_or_arrays["labels"])
                if isinstance(path_or_arrays, dict)
                else path_or_arrays
            )
            self._arrays = {"images": np.asarray(images), "labels": np.asarray(labels)}
            default_name = "arrays"
            all_labels = self._arrays["labels"]
            self._check_images(self._arrays["images"], all_labels.shape[0])
        all_labels = np.asarray(all_labels).astype(np.int64).reshape(-1)
        n_total = all_labels.shape[0]
        if indices is None:
            self.indices: np.ndarray | None = None
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= n_total):
                raise ValueError(
                    f"indices must lie in [0, {n_total}) for {self.path or 'the arrays'}; "
                    f"got values from {idx.min()} to {idx.max()}"
                )
            self.indices = idx
        rows = all_labels if self.indices is None else all_labels[self.indices]
        self._labels = rows if self.label_override is None else np.full_like(rows, label_override)
        self.name = name or default_name

    @staticmethod
    def _check_images(images: np.ndarray, n_labels: int) -> None:
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(
                f"images must be uint8 (N, H, W, 3) or (N, H, W); got {images.dtype} {images.shape}"
            )
        if images.ndim == 4 and images.shape[-1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels last, got shape {images.shape}")
        if images.shape[0] != n_labels:
            raise ValueError(f"{images.shape[0]} images but {n_labels} labels")

    def _images(self) -> np.ndarray:
        if self._arrays is not None:
            return self._arrays["images"]
        images = _npz_array(self.path, "images")
        self._check_images(images, _npz_array(self.path, "labels").shape[0])
        return images

    @property
    def labels(self) -> np.ndarray:
        """Labels of the kept rows (after ``label_override``), int64."""
        return self._labels

    @property
    def class_names(self) -> list[str] | None:
        """``class_names`` stored in the archive, if any."""
        if self.path is None:
            return None
        with np.load(self.path, allow_pickle=False) as archive:
            return archive["class_names"].tolist() if "class_names" in archive.files else None

    def __len__(self) -> int:
        return int(self._labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Any, int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {self.name} ({n} images)")
        row = int(i % n) if self.indices is None else int(self.indices[i])
        pixels = self._images()[row]
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        return self._finish(image.contiguous(), int(self._labels[i]))

    def fingerprint(self) -> str:
        """Digest of the archive's bytes (or the arrays), the row subset and the label override."""
        if self.path is not None:
            source = ("npz", file_digest(self.path))
        else:
            source = ("arrays", _digest(self._arrays["images"], self._arrays["labels"]))
        rows = None if self.indices is None else _digest(self.indices)
        return _digest(source, rows, self.label_override)


# ----------------------------------------------------------------------------- image files


class _FileDataset(_Source):
    """Images stored as files under ``root``: ``self.samples`` = [(relative path, label)]."""

    root: Path
    samples: list[tuple[str, int]]
    skipped: list[str]

    def _setup_files(self, skip_bad: bool, label_override: int | None) -> None:
        self.label_override = _check_override(label_override)
        if self.label_override is not None:
            self.samples = [(p, self.label_override) for p, _ in self.samples]
        self.skip_bad = bool(skip_bad) or _SKIP_BAD_DEFAULT
        self.skipped = []
        if self.skip_bad:
            self._drop_unreadable()

    def _drop_unreadable(self) -> None:
        """Decode every file once (threads) and keep the readable ones; warn with the count."""

        def readable(sample: tuple[str, int]) -> bool:
            try:
                load_rgb(self.root / sample[0])
            except BadImageError:
                return False
            return True

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            ok = list(pool.map(readable, self.samples))
        self.skipped = [s[0] for s, good in zip(self.samples, ok, strict=True) if not good]
        self.samples = [s for s, good in zip(self.samples, ok, strict=True) if good]
        if self.skipped:
            warnings.warn(
                f"{self.name}: skipped {len(self.skipped)} unreadable image(s) of "
                f"{len(self.samples) + len(self.skipped)} (first: {self.skipped[0]}); "
                "see .skipped for the list",
                stacklevel=3,
            )

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    @property
    def num_skipped(self) -> int:
        """How many unreadable images ``skip_bad=True`` left out."""
        return len(self.skipped)

    def path_of(self, i: int) -> Path:
        return self.root / self.samples[i][0]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transformed_item(i, self.transform)

    def transformed_item(self, i: int, transform: Transform | None) -> tuple[Any, int]:
        """``(transform(image i), label)``: row ``i`` decoded by ``load_transformed``."""
        relative, label = self.samples[i]
        return load_transformed(self.root / relative, transform), label

    def fingerprint(self) -> str:
        """Digest of the images' content, in order, with their labels.

        Each file counts by the SHA-256 of its bytes (remembered per file by size, mtime,
        ctime and inode: see :mod:`shapeood.data.content`), never by its path or name, so an
        image edited in place changes the fingerprint and the same images elsewhere keep it.
        Recomputed at every call (cheap: one ``stat`` per file once the digests are known).
        """
        root = os.fspath(self.root)
        digests = file_digests([os.path.join(root, relative) for relative, _ in self.samples])
        labels = np.array([label for _, label in self.samples], dtype=np.int64)
        return _digest("image-files", digests, labels)


def parse_imglist(path: str | os.PathLike) -> tuple[list[tuple[str, int]], list[dict | None]]:
    """Parse an OpenOOD image list: ``<relative path> <label>`` per line.

    Each line is split at its FIRST space (as OpenOOD does): the path is before it, the label
    after. The label is a Python literal: an int, or a dict of extra fields - then, like OpenOOD's
    ``ImglistDataset``, the class label is 0 and the dict is kept in the second list.
    Blank lines are ignored; anything else raises ``ValueError`` naming file and line.
    """
    key = _stat_key(os.path.realpath(path))
    if key not in _parsed_lists:
        _parsed_lists[key] = _parse_imglist(path)
        while len(_parsed_lists) > 64:
            _parsed_lists.pop(next(iter(_parsed_lists)))
    samples, extras = _parsed_lists[key]
    return list(samples), list(extras)


_parsed_lists: dict[Any, tuple[list[tuple[str, int]], list[dict | None]]] = {}
_INT = re.compile(r"^[+-]?\d+$")


def _parse_imglist(path: str | os.PathLike) -> tuple[list[tuple[str, int]], list[dict | None]]:
    samples: list[tuple[str, int]] = []
    extras: list[dict | None] = []
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            relative, sep, label_text = line.partition(" ")
            if not sep or not label_text.strip():
                raise ValueError(
                    f"{os.fspath(path)} line {number}: expected '<path> <label>', got {line!r}"
                )
            if relative.startswith("/"):
                raise ValueError(
                    f"{os.fspath(path)} line {number}: absolute path {relative!r}; image lists "
                    "hold paths relative to root"
                )
            label_text = label_text.strip()
            if _INT.match(label_text):
                samples.append((relative, int(label_text)))
                extras.append(None)
                continue
            try:
                value = ast.literal_eval(label_text)
            except (ValueError, SyntaxError) as err:
                raise ValueError(
                    f"{os.fspath(path)} line {number}: label {label_text!r} is not a literal"
                ) from err
            if isinstance(value, dict):
                samples.append((relative, 0))
                extras.append(value)
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                samples.append((relative, int(value)))
                extras.append(None)
            else:
                raise ValueError(
                    f"{os.fspath(path)} line {number}: label must be an int or a dict, "
                    f"got {label_text!r}"
                )
    return samples, extras


class ImageListDataset(_FileDataset):
    """Images named by an OpenOOD image list, resolved under ``root``.

    Labels come from the list (``label_override=-1`` forces OOD); dict labels give label 0 and
    are kept in ``.extras`` (by relative path; ``.extra(i)``). Images are PIL RGB (then
    ``transform``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        imglist: str | os.PathLike,
        transform: Transform | None = None,
        name: str | None = None,
        skip_bad: bool = False,
        label_override: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.imglist = Path(imglist)
        if not self.imglist.is_file():
            raise FileNotFoundError(f"image list not found: {self.imglist}")
        self.transform = transform
        self.name = name or self.imglist.stem
        self.samples, extras = parse_imglist(self.imglist)
        self.extras: dict[str, dict] = {
            relative: extra
            for (relative, _), extra in zip(self.samples, extras, strict=True)
            if extra
        }
        self._setup_files(skip_bad, label_override)

    def extra(self, i: int) -> dict | None:
        """The dict label of row ``i`` when the list gave one (OpenOOD extra fields), else None."""
        return self.extras.get(self.samples[i][0])


class ImageFolderDataset(_FileDataset):
    """torchvision-style folders: ``root/<class>/<image>``; classes sorted, label = position.

    A root without class folders but with images directly inside is one class (label 0), which
    suits OOD folders. ``label_override=-1`` marks every image as OOD.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Transform | None = None,
        name: str | None = None,
        label_override: int | None = None,
        skip_bad: bool = False,
        extensions: Sequence[str] = IMG_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.transform = transform
        self.name = name or self.root.name
        exts = tuple(e.lower() for e in extensions)
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        self.samples = []
        if self.classes:
            for label, cls in enumerate(self.classes):
                for path in sorted((self.root / cls).rglob("*")):
                    if path.is_file() and path.suffix.lower() in exts:
                        self.samples.append((path.relative_to(self.root).as_posix(), label))
        else:
            for path in sorted(self.root.iterdir()):
                if path.is_file() and path.suffix.lower() in exts:
                    self.samples.append((path.name, 0))
        if not self.samples:
            raise FileNotFoundError(
                f"no images ({', '.join(exts)}) found under {self.root} (expected "
                "root/<class>/<image> or images directly in root)"
            )
        self._setup_files(skip_bad, label_override)


# ----------------------------------------------------------------------------- torchvision

TORCHVISION_DATASETS: dict[str, tuple[str, str]] = {
    # name: (torchvision class, how the split is passed)
    "cifar10": ("CIFAR10", "train_flag"),
    "cifar100": ("CIFAR100", "train_flag"),
    "mnist": ("MNIST", "train_flag"),
    "fashionmnist": ("FashionMNIST", "train_flag"),
    "svhn": ("SVHN", "split"),
    "dtd": ("DTD", "split"),
    "places365": ("Places365", "split"),
    "stl10": ("STL10", "split"),
    "imagenet": ("ImageNet", "split"),
}


class TorchvisionSource(_Source):
    """A torchvision dataset behind the shapeood source contract (RGB PIL images)."""

    def __init__(
        self,
        dataset: Any,
        name: str,
        split: str,
        transform: Transform | None = None,
        label_override: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.name = name
        self.split = split
        self.transform = transform
        self.label_override = _check_override(label_override)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image, label = self.dataset[i]
        if isinstance(image, Image.Image) and image.mode != "RGB":
            image = image.convert("RGB")
        label = int(label) if self.label_override is None else self.label_override
        return self._finish(image, label)

    @property
    def labels(self) -> np.ndarray:
        if self.label_override is not None:
            return np.full(len(self), self.label_override, dtype=np.int64)
        for attr in ("targets", "labels", "_labels"):
            values = getattr(self.dataset, attr, None)
            if values is not None:
                return np.asarray(values, dtype=np.int64).reshape(-1)
        return np.array([int(self.dataset[i][1]) for i in range(len(self))], dtype=np.int64)

    def _folder(self) -> Path:
        """The folder holding this dataset's files (not the whole shared root when avoidable)."""
        for attr in ("_base_folder", "raw_folder"):
            folder = getattr(self.dataset, attr, None)
            if folder is not None and Path(folder).is_dir():
                return Path(folder)
        return Path(self.dataset.root) / getattr(self.dataset, "base_folder", "")

    def fingerprint(self) -> str:
        """Digest of the class, split, size, label override and the content of the folder's files.

        File contents count by SHA-256 (remembered per file: :mod:`shapeood.data.content`).
        """
        folder = self._folder()
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        digests = file_digests(files)
        return _digest(
            type(self.dataset).__name__, self.split, len(self), digests, self.label_override
        )


def torchvision_dataset(
    name: str,
    root: str | os.PathLike,
    split: str = "test",
    transform: Transform | None = None,
    download: bool = False,
    label_override: int | None = None,
) -> TorchvisionSource:
    """A torchvision dataset by short name (``cifar10``, ``cifar100``, ``svhn``, ``mnist``,
    ``fashionmnist``, ``dtd``, ``places365``, ``stl10``, ``imagenet``) and split.

    CIFAR/MNIST take ``split`` "train" or "test"; the others take torchvision's split names
    (Places365: "val" or "train-standard", small 256x256 images). ``download=True`` fetches
    the files (network needed).
    """
    import torchvision.datasets as tvd

    key = name.lower().replace("-", "").replace("_", "")
    if key not in TORCHVISION_DATASETS:
        raise ValueError(
            f"unknown torchvision dataset {name!r}: use one of {', '.join(TORCHVISION_DATASETS)}"
        )
    class_name, split_style = TORCHVISION_DATASETS[key]
    cls = getattr(tvd, class_name)
    kwargs: dict[str, Any] = {}
    if split_style == "train_flag":
        if split not in ("train", "test"):
            raise ValueError(f"{name} split must be 'train' or 'test', got {split!r}")
        kwargs["train"] = split == "train"
    else:
        kwargs["split"] = split
    if key == "places365":
        kwargs["small"] = True
    if key != "imagenet":
        kwargs["download"] = download
    try:
        dataset = cls(os.fspath(root), **kwargs)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"{class_name} ({split}) not found under {root}: {err}. Pass download=True "
            "(needs network) or point root at a folder that holds it"
        ) from err
    return TorchvisionSource(dataset, f"{key}_{split}", split, transform, label_override)
