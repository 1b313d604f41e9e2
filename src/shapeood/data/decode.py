"""Image files to RGB pixels: the fastest decoder whose pixels equal Pillow's ``convert("RGB")``.

Pillow is the reference: ``Image.open(f).convert("RGB")`` (``sources.load_rgb``). For the file
kinds where torchvision's libpng/libjpeg decoders give exactly those bytes (checked by
``tests/test_decode.py`` on every kind below), ``decode_file`` uses them:

* PNG, 8 bits per sample, not interlaced, not animated: grey, grey + alpha, RGB, RGBA and
  palette images (with or without a ``tRNS`` transparency chunk; alpha is dropped, as Pillow's
  ``convert("RGB")`` drops it);
* JPEG, Huffman-coded baseline, extended or progressive, 8-bit, 1 (grey) or 3 components
  (YCbCr or Adobe RGB), any chroma subsampling, not multi-picture (MPO).

Everything else (16-bit or interlaced PNG, CMYK or arithmetic-coded JPEG, other formats, a file
that does not end where its format says it ends, which is how truncated files look, images
larger than Pillow's ``MAX_IMAGE_PIXELS``, any decoder error or warning) goes through Pillow,
whose behaviour (truncated files tolerated, ``BadImageError`` naming the path) is kept. Should
torchvision's image decoders go (deprecated since torchvision 0.29 in favour of TorchCodec),
everything goes through Pillow.

``transform_on_pixels(transform, height, width)`` says when a transform may run on the decoded
``uint8 (3, H, W)`` tensor instead of the PIL image with a bit-identical result: a
``Compose`` of torchvision v2 ``Resize`` that leaves this size unchanged, ``CenterCrop`` within
the image, ``ToImage``, and then tensor-only steps (``ToFloat``, ``Normalize``). Resizing that
changes the size always runs on the PIL image, as it always has.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_COLOUR_TYPES = (0, 2, 3, 4, 6)  # grey, RGB, palette, grey + alpha, RGBA
_JPEG_FRAMES = (0xC0, 0xC1, 0xC2)  # Huffman baseline, extended sequential, progressive
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length

_tvio: Any = None


def _torchvision_io() -> Any:
    """``torchvision.io`` when its image decoders load, else False (Pillow for everything)."""
    global _tvio
    if _tvio is None:
        try:
            import torchvision.io as tvio

            tvio.decode_png  # noqa: B018 - fails when the image extension is missing
            _tvio = tvio
        except Exception:  # any failure means: decode with Pillow
            _tvio = False
    return _tvio


def prepare_decoding() -> None:
    """Import the decoders and the torchvision transforms now, in this process.

    Called before DataLoader workers start: forked workers then inherit the modules instead of
    each importing torchvision again (seconds per worker, and per dataset, on a small CPU).
    """
    _torchvision_io()
    try:
        import torchvision.transforms.v2  # noqa: F401
    except Exception:  # no torchvision: the transforms say so when they run
        pass


def _within_pixel_limit(width: int, height: int) -> bool:
    limit = Image.MAX_IMAGE_PIXELS
    return width > 0 and height > 0 and (limit is None or width * height <= limit)


Kind = tuple[str, int, int]  # ("png" | "jpeg", height, width)


def png_kind(data: bytes | bytearray) -> Kind | None:
    """``("png", height, width)`` for a complete PNG of a kind decoded exactly, else None."""
    if len(data) < 45 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    if data[-12:] != _PNG_END:
        return None  # truncated, or bytes after IEND
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, interlace = data[24], data[25], data[28]
    if depth != 8 or colour not in _PNG_COLOUR_TYPES or interlace != 0:
        return None
    first_data = data.find(b"IDAT")
    if first_data < 0 or b"acTL" in data[:first_data]:
        return None  # no image data, or an animated PNG
    return ("png", height, width) if _within_pixel_limit(width, height) else None


def jpeg_kind(data: bytes | bytearray) -> Kind | None:
    """``("jpeg", height, width)`` for a complete JPEG of a kind decoded exactly, else None."""
    if len(data) < 4 or data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xE2 and data[i + 4 : i + 8] == b"MPF\x00":
            return None  # multi-picture file: Pillow opens it as MPO
        if marker in _JPEG_FRAMES:
            frame = data[i + 4 : i + 10]
            if len(frame) < 6:
                return None
            precision, components = frame[0], frame[5]
            height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            if precision != 8 or components not in (1, 3):
                return None
            return ("jpeg", height, width) if _within_pixel_limit(width, height) else None
        if 0xC3 <= marker <= 0xCF or marker in (0xDA, 0xD9):
            return None  # lossless / arithmetic / hierarchical frame, or no frame header
        i += 2 + length
    return None


def fast_kind(data: bytes | bytearray) -> Kind | None:
    """``(format, height, width)`` when torchvision decodes ``data`` exactly as Pillow."""
    return png_kind(data) or jpeg_kind(data)


def _read(path: str | os.PathLike) -> bytearray | None:
    try:
        with open(path, "rb") as handle:
            data = bytearray(os.fstat(handle.fileno()).st_size)
            n = handle.readinto(data)
    except OSError:
        return None  # Pillow's path reports it with the file's name
    return data if n == len(data) else None


def decode_bytes(data: bytearray, kind: str) -> torch.Tensor | None:
    """``uint8 (3, H, W)`` RGB pixels through torchvision, or None (then use Pillow)."""
    tvio = _torchvision_io()
    if not tvio:
        return None
    buffer = torch.frombuffer(data, dtype=torch.uint8)
    decoder = tvio.decode_png if kind == "png" else tvio.decode_jpeg
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a decoder warning (corrupt data): let Pillow decide
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        try:
            pixels = decoder(buffer, mode=tvio.ImageReadMode.RGB)
        except (RuntimeError, ValueError, AttributeError, Warning):
            return None
    if pixels.dtype != torch.uint8 or pixels.ndim != 3 or pixels.shape[0] != 3:
        return None
    return pixels


def decode_file(path: str | os.PathLike) -> torch.Tensor | None:
    """The RGB pixels of ``path`` as ``uint8 (3, H, W)`` when torchvision decodes it exactly.

    None means: decode with Pillow (``sources.load_rgb``), which also reports unreadable files.
    """
    data = _read(path)
    kind = None if data is None else fast_kind(data)
    return None if kind is None else decode_bytes(data, kind[0])


def pixels_for(path: str | os.PathLike, transform: Any) -> torch.Tensor | None:
    """The pixels of ``path`` (``uint8 (3, H, W)``) when ``transform`` may take them instead
    of the PIL image (``transform_on_pixels`` for the size in the file's header) and
    torchvision decodes the file exactly; else None (then: Pillow, then ``transform``).

    This is where decoding gains: the pixels go to the transform without the PIL image and
    its conversion to a tensor. Where the transform resizes, the PIL image is needed anyway and
    Pillow decodes it (a torchvision decode then ``Image.fromarray`` measured no faster).
    """
    if not _is_v2(transform, *_PIPELINES):
        return None
    data = _read(path)
    kind = None if data is None else fast_kind(data)
    if kind is None or not transform_on_pixels(transform, kind[1], kind[2]):
        return None
    return decode_bytes(data, kind[0])


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """``uint8 (3, H, W)`` pixels as an RGB ``PIL.Image`` with the same bytes."""
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()), mode="RGB")


_PIPELINES = ("Compose", "ModelTransform")


def _is_v2(step: Any, *names: str) -> bool:
    """A torchvision v2 transform named ``names``, or shapeood's deferred copy of one
    (``shapeood.models.transforms``, which builds and runs that very transform)."""
    kind = type(step)
    module = kind.__module__
    ours = module.startswith("torchvision.transforms.v2") or module == "shapeood.models.transforms"
    return ours and kind.__name__ in names


def _size_pair(size: Any) -> tuple[int, ...] | None:
    if isinstance(size, int):
        return (size,)
    if isinstance(size, (list, tuple)) and size and all(isinstance(s, int) for s in size):
        return tuple(size)
    return None


def transform_on_pixels(transform: Any, height: int, width: int) -> bool:
    """Whether ``transform`` gives bit-identical output on ``uint8 (3, H, W)`` pixels and on
    the PIL image holding them, for an image of ``height`` x ``width``.

    True only for a torchvision v2 ``Compose`` (or ``transform_for``'s pipeline) whose steps
    up to ``ToImage`` are a ``Resize`` that keeps this size (shorter side already ``size``, no
    ``max_size``; torchvision then returns its input unchanged for both kinds) and a
    ``CenterCrop`` that fits inside the image (pure slicing with the same anchor for both);
    the steps after ``ToImage`` see the same tensor either way.
    """
    if not _is_v2(transform, *_PIPELINES):
        return False
    h, w = int(height), int(width)
    for step in getattr(transform, "transforms", ()):
        if _is_v2(step, "ToImage"):
            return True
        if _is_v2(step, "Resize"):
            size = _size_pair(getattr(step, "size", None))
            if getattr(step, "max_size", None) is not None or size is None:
                return False
            if len(size) == 1 and min(h, w) != size[0]:
                return False
            if len(size) == 2 and size != (h, w):
                return False
            if len(size) > 2:
                return False
        elif _is_v2(step, "CenterCrop"):
            size = _size_pair(getattr(step, "size", None))
            crop = None if size is None else (size * 2 if len(size) == 1 else size)
            if crop is None or len(crop) != 2 or crop[0] > h or crop[1] > w:
                return False
            h, w = crop
        else:
            return False
    return False
