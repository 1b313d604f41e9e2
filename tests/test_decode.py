"""Fast image decoding: pixels equal Pillow's ``convert("RGB")``, features equal the PIL path's."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from shapeood.data import ImageFolderDataset, ImageListDataset, load_rgb
from shapeood.data import decode as dec
from shapeood.data.sources import load_transformed

RNG = np.random.default_rng(7)


def _base_images(kit) -> list[Image.Image]:
    with np.load(kit / "cifar10_test.npz") as z:
        small = [Image.fromarray(a) for a in z["images"][:2]]
    with np.load(kit / "dtd_subset_224.npz") as z:
        large = Image.fromarray(z["images"][0])
    noise = Image.fromarray(RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    return [*small, large.resize((301, 257)), noise]


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _with_gamma_chunk(png: bytes) -> bytes:
    """The PNG with a gAMA chunk (gamma 1/2.2) after IHDR: Pillow ignores it, so must we."""
    body = b"gAMA" + (45455).to_bytes(4, "big")
    chunk = (4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return png[:33] + chunk + png[33:]


def _fast_kinds(image: Image.Image) -> dict[str, bytes]:
    """Files torchvision decodes (the fast path must be taken and exact)."""
    rgba = Image.merge("RGBA", (*image.split(), image.convert("L")))
    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=200)
    files = {
        "png_rgb": _encoded(image, "PNG", compress_level=1),
        "png_rgba": _encoded(rgba, "PNG"),
        "png_grey": _encoded(image.convert("L"), "PNG"),
        "png_grey_alpha": _encoded(image.convert("LA"), "PNG"),
        "png_palette": _encoded(palette, "PNG"),
        "png_palette_trns": _encoded(palette, "PNG", transparency=3),
        "png_rgb_trns": _encoded(image, "PNG", transparency=(1, 2, 3)),
        "png_gamma": _with_gamma_chunk(_encoded(image, "PNG")),
        "jpeg_grey": _encoded(image.convert("L"), "JPEG", quality=90),
        "jpeg_grey_progressive": _encoded(image.convert("L"), "JPEG", progressive=True),
        "jpeg_adobe_rgb": _encoded(image, "JPEG", keep_rgb=True),
        "jpeg_restart_markers": _encoded(image, "JPEG", restart_marker_blocks=2),
        "jpeg_optimized": _encoded(image, "JPEG", optimize=True),
    }
    for subsampling in (0, 1, 2):  # 4:4:4, 4:2:2, 4:2:0
        for progressive in (False, True):
            name = f"jpeg_ss{subsampling}{'_progressive' if progressive else ''}"
            files[name] = _encoded(
                image, "JPEG", quality=75, subsampling=subsampling, progressive=progressive
            )
    return files


def _pillow_kinds(image: Image.Image) -> dict[str, bytes]:
    """Files outside the proven set: decoded by Pillow (and so trivially exact)."""
    grey16 = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    png = _encoded(image, "PNG")
    return {
        "png_16bit": _encoded(grey16, "PNG"),
        "png_1bit": _encoded(image.convert("1"), "PNG"),
        "png_truncated": png[: len(png) * 2 // 3],
        "png_trailing_bytes": png + b"\x00" * 7,
        "jpeg_cmyk": _encoded(image.convert("CMYK"), "JPEG"),
        "jpeg_truncated": _encoded(image, "JPEG")[:-200],
        "bmp": _encoded(image, "BMP"),
        "webp": _encoded(image, "WEBP", lossless=True),
    }


@pytest.fixture(scope="module")
def files(kit, tmp_path_factory) -> dict[str, tuple[str, object]]:
    folder = tmp_path_factory.mktemp("kinds")
    out = {}
    for n, image in enumerate(_base_images(kit)):
        for route, kinds in (("fast", _fast_kinds(image)), ("pillow", _pillow_kinds(image))):
            for kind, data in kinds.items():
                path = folder / f"{n}_{kind}.{kind.split('_')[0]}"
                path.write_bytes(data)
                out[f"{n}_{kind}"] = (route, path)
    return out


def test_decoded_pixels_equal_pillow_for_every_kind(files):
    for name, (route, path) in files.items():
        fast = dec.decode_file(path)
        assert (fast is not None) == (route == "fast"), name  # the intended decoder ran
        reference = np.asarray(load_rgb(path))
        kind = dec.fast_kind(bytearray(path.read_bytes()))
        if fast is not None:
            assert kind[1:] == reference.shape[:2], name  # the header's size
            assert fast.dtype == torch.uint8 and fast.shape == (3, *reference.shape[:2]), name
            assert np.array_equal(fast.permute(1, 2, 0).numpy(), reference), name


def _cifar_transform():
    from shapeood.models import transform_for

    return transform_for({"mean": (0.5,) * 3, "std": (0.25,) * 3, "input_size": (3, 32, 32)})


def test_pixels_go_to_the_transform_only_when_identical(tmp_path):
    tf = _cifar_transform()
    for size in ((32, 32), (36, 40)):
        Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp_path / "a.png")
        pixels = dec.pixels_for(tmp_path / "a.png", tf)
        assert (pixels is not None) == (size == (32, 32))  # a real resize keeps the PIL image
        assert dec.pixels_for(tmp_path / "a.png", lambda image: image) is None
        expected = tf(load_rgb(tmp_path / "a.png"))
        assert torch.equal(load_transformed(tmp_path / "a.png", tf), expected)


def test_unreadable_files_keep_their_error(tmp_path):
    from shapeood.data import BadImageError

    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(BadImageError, match=r"bad\.png"):
        load_transformed(tmp_path / "bad.png", None)
    with pytest.raises(BadImageError, match=r"missing\.jpg"):
        load_transformed(tmp_path / "missing.jpg", _cifar_transform())


def test_transform_runs_on_pixels_only_where_identical(kit):
    from torchvision.transforms import v2

    from shapeood.models import transform_for

    tf = transform_for({"mean": (0.5,) * 3, "std": (0.25,) * 3, "input_size": (3, 32, 32)})
    composed = v2.Compose([v2.Resize(32), v2.CenterCrop(32), v2.ToImage(), v2.ToDtype(torch.int32)])
    for pipeline in (tf, composed):
        assert dec.transform_on_pixels(pipeline, 32, 32)
        assert dec.transform_on_pixels(pipeline, 32, 45)
        assert not dec.transform_on_pixels(pipeline, 40, 36)
    assert dec.transform_on_pixels(tf, 32, 32)
    assert dec.transform_on_pixels(tf, 32, 45)  # shorter side already 32: crop only
    assert not dec.transform_on_pixels(tf, 40, 36)  # a real resize stays on the PIL image
    assert not dec.transform_on_pixels(tf, 31, 64)
    assert not dec.transform_on_pixels(v2.Compose([v2.CenterCrop(40), v2.ToImage()]), 32, 32)
    assert not dec.transform_on_pixels(v2.Compose([v2.Grayscale(), v2.ToImage()]), 32, 32)
    assert not dec.transform_on_pixels(lambda image: image, 32, 32)
    sized = v2.Compose([v2.Resize(32, max_size=40), v2.ToImage()])
    assert not dec.transform_on_pixels(sized, 32, 50)


def _png_folder(kit, root) -> None:
    """Two classes of PNG and JPEG files, 32x32 and larger (which the transform resizes)."""
    with np.load(kit / "cifar10_test.npz") as z:
        images = z["images"][:24]
    for i, array in enumerate(images):
        image = Image.fromarray(array)
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        if i % 5 == 1:
            image = image.resize((45, 38))
        if i % 5 == 2:
            image = image.resize((32, 41))
        if i % 4 == 3:
            image.save(folder / f"{i:03d}.jpg", quality=85)
        else:
            image.save(folder / f"{i:03d}.png")


class _PillowPath(Dataset):
    """The reference: every image through ``load_rgb`` (Pillow), then ``transform``."""

    def __init__(self, files: ImageFolderDataset, transform) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        relative, label = self.files.samples[i]
        return self.transform(load_rgb(self.files.root / relative)), label


def test_features_through_fast_decoding_equal_the_pillow_path(kit, tmp_path):
    import shapeood as so
    from shapeood.features.extraction import TransformedDataset

    _png_folder(kit, tmp_path / "images")
    net = so.models.load_model("resnet20_cifar10")
    tf = so.models.transform_for(net)
    files = ImageFolderDataset(tmp_path / "images")
    assert dec.transform_on_pixels(tf, 32, 32)  # the 32x32 files skip the PIL image
    options = {"batch_size": 24, "num_workers": 0, "cache": False, "progress": False}
    reference = so.extract(net, _PillowPath(files, tf), **options)
    for dataset in (
        files,  # raw images: extract applies the model's transform
        ImageFolderDataset(tmp_path / "images", transform=tf),
        TransformedDataset(Subset(files, list(range(len(files)))), tf),
    ):
        got = so.extract(net, dataset, **options)
        assert torch.equal(got.features, reference.features)
        assert torch.equal(got.logits, reference.logits)
        assert torch.equal(got.labels, reference.labels)
    lines = "\n".join(f"{p} {y}" for p, y in files.samples)
    (tmp_path / "list.txt").write_text(lines + "\n")
    listed = ImageListDataset(tmp_path / "images", tmp_path / "list.txt", transform=tf)
    for i in range(len(files)):  # and image by image, pixels or PIL route alike
        assert torch.equal(listed[i][0], _PillowPath(files, tf)[i][0])
