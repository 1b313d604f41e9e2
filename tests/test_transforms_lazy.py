"""transform_for's deferred pipeline against the torchvision v2.Compose it stands for."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from shapeood.data.pixels import ToFloat
from shapeood.models import transform_for
from shapeood.models.transforms import INTERPOLATIONS

CFG = {
    "mean": (0.4914, 0.4822, 0.4465),
    "std": (0.2470, 0.2435, 0.2616),
    "input_size": (3, 32, 32),
    "resize": 32,
    "interpolation": "bilinear",
    "num_classes": 10,
}


def _reference(cfg, resize, crop) -> v2.Compose:
    """The pipeline as torchvision objects: Resize, CenterCrop, ToImage, x / 255, Normalize."""
    crop = [crop, crop] if isinstance(crop, int) else list(crop)
    mode = InterpolationMode(cfg["interpolation"])
    return v2.Compose(
        [
            v2.Resize(resize, interpolation=mode, antialias=True),
            v2.CenterCrop(crop),
            v2.ToImage(),
            ToFloat(),
            v2.Normalize(mean=list(cfg["mean"]), std=list(cfg["std"])),
        ]
    )


def test_interpolation_names_are_torchvisions():
    assert INTERPOLATIONS == tuple(m.value for m in InterpolationMode)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "nearest-exact"])
@pytest.mark.parametrize(("resize", "crop"), [(32, 32), (36, 32), (40, (28, 32)), (24, [20])])
def test_same_tensors_and_repr_as_v2_compose(interpolation, resize, crop):
    cfg = {**CFG, "interpolation": interpolation}
    ours = transform_for(cfg, resize=resize, crop=crop)
    reference = _reference(cfg, resize, crop)
    assert repr(ours) == repr(reference)
    rng = np.random.default_rng(0)
    for height, width in ((32, 32), (50, 37), (17, 64), (224, 300)):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
        for image in (Image.fromarray(pixels), tensor):
            got, expected = ours(image), reference(image)
            assert type(got) is type(expected)
            assert got.dtype == expected.dtype == torch.float32
            assert torch.equal(got, expected)


@pytest.mark.parametrize("interpolation", ["box", "hamming", "lanczos"])
def test_pil_only_modes_match_on_pil(interpolation):
    cfg = {**CFG, "interpolation": interpolation}
    pixels = np.random.default_rng(1).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    ours, reference = transform_for(cfg, resize=36, crop=32), _reference(cfg, 36, 32)
    assert repr(ours) == repr(reference)
    assert torch.equal(ours(image), reference(image))


def test_picklable_before_and_after_a_call():
    transform = transform_for(CFG, resize=36)
    image = torch.randint(0, 256, (3, 40, 44), dtype=torch.uint8)
    fresh = pickle.loads(pickle.dumps(transform))
    expected = transform(image)
    used = pickle.loads(pickle.dumps(transform))
    for copy in (fresh, used):
        assert repr(copy) == repr(transform)
        assert torch.equal(copy(image), expected)


def test_normalize_std_is_found_without_running():
    from shapeood.features.perturbation import _normalize_std

    assert _normalize_std(transform_for(CFG)) == tuple(float(s) for s in CFG["std"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"interpolation": "fancy"}, "unknown interpolation 'fancy'"),
        ({"resize": 0}, "resize and crop must be positive"),
        ({"crop": [1, 2, 3]}, r"crop must be one size or \(height, width\)"),
    ],
)
def test_errors_when_built(change, message):
    cfg = {**CFG, **{k: v for k, v in change.items() if k != "crop"}}
    with pytest.raises(ValueError, match=message):
        transform_for(cfg, crop=change.get("crop"))


def test_building_imports_no_torchvision():
    code = (
        "import sys\n"
        "from shapeood.models import transform_for\n"
        "t = transform_for({'mean': (0.5,) * 3, 'std': (0.5,) * 3, 'input_size': (3, 8, 8)})\n"
        "repr(t)\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
