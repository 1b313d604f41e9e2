"""Image sources: npz arrays (the kit), OpenOOD image lists, image folders, torchvision."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from shapeood.data import (
    ArrayDataset,
    BadImageError,
    ImageFolderDataset,
    ImageListDataset,
    parse_imglist,
    torchvision_dataset,
)

# ----------------------------------------------------------------------------- helpers


def _write_image(path: Path, color: tuple[int, int, int], size=(12, 10), fmt="JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def _truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _noisy_jpeg(path: Path, seed: int = 0, size: int = 48) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=90)
    return path


# ----------------------------------------------------------------------------- npz arrays


def test_array_dataset_reads_the_kit(kit):
    ds = ArrayDataset(kit / "cifar10_test.npz")
    with np.load(kit / "cifar10_test.npz") as z:
        labels, first = z["labels"], z["images"][0]
    assert len(ds) == 10000 and ds.name == "cifar10_test"
    image, label = ds[0]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 32, 32)
    assert torch.equal(image, torch.from_numpy(first).permute(2, 0, 1))
    assert label == int(labels[0])
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.class_names[0] == "airplane"


def test_array_dataset_subset_override_transform_and_fingerprint(kit):
    path = kit / "dtd_subset_32.npz"
    full = ArrayDataset(path)
    sub = ArrayDataset(path, indices=[5, 2, 7], label_override=-1, transform=lambda x: x.float())
    assert len(sub) == 3
    image, label = sub[1]
    assert label == -1 and image.dtype == torch.float32
    assert torch.equal(image, full[2][0].float())
    assert sub.labels.tolist() == [-1, -1, -1]
    # fingerprint: stable across instances, sensitive to rows and label override
    assert ArrayDataset(path).fingerprint() == full.fingerprint()
    assert ArrayDataset(path, indices=[5, 2, 7]).fingerprint() != full.fingerprint()
    assert ArrayDataset(path, indices=[5, 2, 7]).fingerprint() != sub.fingerprint()
    assert ArrayDataset(path, indices=[2, 5, 7], label_override=-1).fingerprint() != (
        sub.fingerprint()
    )


def test_mnist_is_28_pixels_and_three_channels(kit):
    image, label = ArrayDataset(kit / "mnist_test.npz")[3]
    assert tuple(image.shape) == (3, 28, 28) and 0 <= label <= 9
    assert torch.equal(image[0], image[2])


def test_array_fingerprint_follows_file_bytes(tmp_path):
    images = np.zeros((4, 8, 8, 3), np.uint8)
    path = tmp_path / "a.npz"
    np.savez(path, images=images, labels=np.arange(4))
    before = ArrayDataset(path).fingerprint()
    images[0, 0, 0, 0] = 1  # same file size, different bytes
    np.savez(path, images=images, labels=np.arange(4))
    after = ArrayDataset(path)
    assert after.fingerprint() != before
    assert int(after[0][0][0, 0, 0]) == 1  # the array cache does not serve stale pixels


def test_array_dataset_from_arrays_and_errors():
    grey = np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5)
    ds = ArrayDataset({"images": grey, "labels": [3, 4]}, name="grey")
    image, label = ds[1]
    assert tuple(image.shape) == (3, 5, 5) and label == 4 and ds.name == "grey"
    assert ds.fingerprint() == ArrayDataset((grey, np.array([3, 4]))).fingerprint()
    with pytest.raises(ValueError, match="uint8"):
        ArrayDataset({"images": grey.astype(np.float32), "labels": [3, 4]})
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ArrayDataset({"images": grey, "labels": [1, 2, 3]})
    with pytest.raises(ValueError, match="indices must lie in"):
        ArrayDataset({"images": grey, "labels": [3, 4]}, indices=[0, 2])
    with pytest.raises(ValueError, match="label_override"):
        ArrayDataset({"images": grey, "labels": [3, 4]}, label_override="ood")
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
        ArrayDataset("missing.npz")


# ----------------------------------------------------------------------------- image lists


def test_parse_imglist_splits_on_first_space_and_reads_dict_labels(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(
        "cifar10/test/cat/0001.png 3\r\n"
        "\n"
        "tin/val/images/val_7.JPEG -1 \n"
        "x/img.png {'label': 5, 'sc': 0.5}\n"
    )
    samples, extras = parse_imglist(listing)
    assert samples == [
        ("cifar10/test/cat/0001.png", 3),
        ("tin/val/images/val_7.JPEG", -1),
        ("x/img.png", 0),  # OpenOOD keeps dict labels as extras and sets label 0
    ]
    assert extras == [None, None, {"label": 5, "sc": 0.5}]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("my folder/img 1.png 3", "line 1: label 'folder/img 1.png 3' is not a literal"),
        ("lonely.png", "line 1: expected '<path> <label>'"),
        ("/abs/path.png 1", "absolute path"),
        ("a.png 'cat'", "must be an int or a dict"),
    ],
)
def test_parse_imglist_errors_name_the_line(tmp_path, line, message):
    listing = tmp_path / "bad.txt"
    listing.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        parse_imglist(listing)


@pytest.fixture()
def image_tree(tmp_path) -> Path:
    root = tmp_path / "images"
    _write_image(root / "set" / "red.jpg", (250, 0, 0))
    _write_image(root / "set" / "green.png", (0, 250, 0), fmt="PNG")
    grey = root / "set" / "grey.png"
    Image.new("L", (6, 6), 128).save(grey)
    _truncate(_noisy_jpeg(root / "set" / "truncated.jpg"))
    (root / "set" / "corrupt.jpg").write_bytes(b"this is not an image at all" * 10)
    return root


def _write_list(tmp_path: Path, names: list[str]) -> Path:
    listing = tmp_path / "test_set.txt"
    listing.write_text("".join(f"set/{n} {i} \n" for i, n in enumerate(names)))
    return listing


def test_imglist_loads_rgb_and_tolerates_truncated_files(tmp_path, image_tree):
    listing = _write_list(tmp_path, ["red.jpg", "green.png", "grey.png", "truncated.jpg"])
    ds = ImageListDataset(image_tree, listing)
    assert ds.name == "test_set" and len(ds) == 4 and ds.labels.tolist() == [0, 1, 2, 3]
    red, label = ds[0]
    assert isinstance(red, Image.Image) and red.mode == "RGB" and red.size == (12, 10)
    assert label == 0 and red.getpixel((5, 5))[0] > 200
    assert ds[2][0].mode == "RGB"
    truncated, _ = ds[3]
    assert truncated.size == (48, 48)
    # the Pillow switch is scoped to the load
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(OSError):
        with Image.open(image_tree / "set" / "truncated.jpg") as im:
            im.load()


def test_imglist_bad_file_raises_naming_the_path(tmp_path, image_tree):
    listing = _write_list(tmp_path, ["red.jpg", "corrupt.jpg", "absent.jpg"])
    ds = ImageListDataset(image_tree, listing, label_override=-1)
    assert ds.labels.tolist() == [-1, -1, -1]
    with pytest.raises(BadImageError, match=r"corrupt\.jpg"):
        ds[1]
    with pytest.raises(BadImageError, match=r"absent\.jpg.*skip_bad=True"):
        ds[2]


def test_imglist_skip_bad_drops_and_counts(tmp_path, image_tree):
    names = ["red.jpg", "corrupt.jpg", "green.png", "absent.jpg", "truncated.jpg"]
    listing = _write_list(tmp_path, names)
    with pytest.warns(UserWarning, match="skipped 2 unreadable image"):
        ds = ImageListDataset(image_tree, listing, skip_bad=True, transform=lambda im: im.size)
    assert ds.num_skipped == 2 and sorted(ds.skipped) == ["set/absent.jpg", "set/corrupt.jpg"]
    assert len(ds) == 3 and ds.labels.tolist() == [0, 2, 4]
    assert [ds[i][0] for i in range(3)] == [(12, 10), (12, 10), (48, 48)]
    strict = ImageListDataset(image_tree, _write_list(tmp_path, names))
    assert strict.fingerprint() != ds.fingerprint()


def test_imglist_dict_labels_and_fingerprint(tmp_path, image_tree):
    listing = tmp_path / "dict.txt"
    listing.write_text("set/red.jpg {'label': 4}\nset/green.png 1\n")
    ds = ImageListDataset(image_tree, listing, name="custom")
    assert ds.name == "custom" and ds.labels.tolist() == [0, 1]
    assert ds.extra(0) == {"label": 4} and ds.extra(1) is None
    before = ds.fingerprint()
    assert ImageListDataset(image_tree, listing).fingerprint() == before
    _write_image(image_tree / "set" / "red.jpg", (1, 2, 3), size=(40, 40))  # new file size
    assert ImageListDataset(image_tree, listing).fingerprint() != before


# ----------------------------------------------------------------------------- folders


def test_image_folder_classes_and_flat_folders(tmp_path):
    root = tmp_path / "folder"
    _write_image(root / "zebra" / "a.jpg", (0, 0, 0))
    _write_image(root / "ant" / "b.png", (9, 9, 9), fmt="PNG")
    _write_image(root / "ant" / "c.jpg", (9, 9, 9))
    (root / "ant" / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(root)
    assert ds.classes == ["ant", "zebra"] and ds.name == "folder"
    assert ds.samples == [("ant/b.png", 0), ("ant/c.jpg", 0), ("zebra/a.jpg", 1)]
    assert ds[2][1] == 1 and ds[2][0].mode == "RGB"
    ood = ImageFolderDataset(root, label_override=-1)
    assert ood.labels.tolist() == [-1, -1, -1]
    flat = ImageFolderDataset(root / "ant")
    assert flat.labels.tolist() == [0, 0] and len(flat) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolderDataset(empty)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderDataset(tmp_path / "nowhere")


def test_image_folder_skip_bad(tmp_path):
    root = tmp_path / "ood"
    _write_image(root / "images" / "a.jpg", (1, 1, 1))
    (root / "images" / "b.jpg").write_bytes(b"\xff\xd8 broken")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(root, skip_bad=True, label_override=-1)
    assert (
        len(ds) == 1 and ds.num_skipped == 1 and any("skipped 1" in str(w.message) for w in caught)
    )


# ----------------------------------------------------------------------------- torchvision


def _write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's raw IDX files (torchvision wants the train files present too)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, h, w) + images.tobytes()
        )
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
        )


def test_torchvision_wrapper_yields_rgb_and_labels(kit, tmp_path):
    with np.load(kit / "mnist_test.npz") as z:
        images, labels = z["images"][:6, :, :, 0], z["labels"][:6]
    _write_idx(tmp_path / "MNIST" / "raw", images, labels)
    ds = torchvision_dataset("MNIST", tmp_path, split="test")
    assert len(ds) == 6 and ds.name == "mnist_test"
    image, label = ds[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and label == int(labels[0])
    np.testing.assert_array_equal(np.asarray(image)[:, :, 1], images[0])
    np.testing.assert_array_equal(ds.labels, labels)
    ood = torchvision_dataset("mnist", tmp_path, split="test", label_override=-1)
    assert ood[1][1] == -1 and ood.fingerprint() != ds.fingerprint()
    assert ds.fingerprint() == torchvision_dataset("mnist", tmp_path).fingerprint()


def test_torchvision_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown torchvision dataset"):
        torchvision_dataset("imagenet21k", tmp_path)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        torchvision_dataset("cifar10", tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match="download=True"):
        torchvision_dataset("cifar10", tmp_path, split="test")
