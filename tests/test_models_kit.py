"""Real pretrained weights of the offline kit on real images (fails loudly without the kit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shapeood.models import adapt, create, list_models, load_model, transform_for

KIT_NAMES = [
    "resnet20_cifar10",
    "resnet32_cifar10",
    "resnet56_cifar10",
    "densenet100_cifar10",
    "densenet100_cifar100",
    "mobilenet_v2_imagenet",
]


def _images(kit: Path, name: str, count: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    with np.load(kit / name, allow_pickle=False) as z:
        images = torch.from_numpy(z["images"][:count]).permute(0, 3, 1, 2).contiguous()
        return images, z["labels"][:count]


def _correct(model: torch.nn.Module, images: torch.Tensor, labels: np.ndarray) -> int:
    """Correct top-1 predictions through the adapter: ``head(features(x))``."""
    size = images.shape[-1]
    transform = transform_for(model, resize=size, crop=size)
    fm = adapt(model)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), 25):  # small batches: 224x224 maps are large
            batch = torch.stack([transform(img) for img in images[start : start + 25]])
            h, logits = fm.features_and_logits(batch)
            torch.testing.assert_close(fm.head(h), logits, rtol=1e-5, atol=1e-5)
            pred = logits.argmax(1).numpy()
            correct += int((pred == labels[start : start + 25]).sum())
    return correct


def test_list_models_names_the_kit() -> None:
    assert list_models() == KIT_NAMES


@pytest.mark.parametrize("name", ["resnet20_cifar10", "resnet56_cifar10", "densenet100_cifar10"])
def test_cifar10_models_classify_the_exact_sample(kit: Path, name: str) -> None:
    images, labels = _images(kit, "cifar10_exact_sample.npz")
    assert _correct(load_model(name), images, labels) == 20


def test_resnet32_on_the_exact_sample(kit: Path) -> None:
    # The kit lists no reference for ResNet-32; it misses one of these 20 (sample 15, a ship
    # taken for a frog), as a 92.8%-accurate model may. Same code as ResNet-20/56 otherwise.
    images, labels = _images(kit, "cifar10_exact_sample.npz")
    assert _correct(load_model("resnet32_cifar10"), images, labels) >= 19


def test_cifar100_densenet_on_its_exact_sample(kit: Path) -> None:
    images, labels = _images(kit, "cifar100_exact_sample.npz")
    model = load_model("densenet100_cifar100")
    assert model.fc.out_features == 100
    assert _correct(model, images, labels) == 14  # the kit README's figure


def test_mobilenet_v2_top1_on_the_imagenet_sample(kit: Path) -> None:
    images, labels = _images(kit, "imagenet_sample_224.npz")
    model = load_model("mobilenet_v2_imagenet")
    accuracy = _correct(model, images, labels) / len(labels)
    assert accuracy >= 0.85
    # The kit README measured 90.25%; TF "SAME" padding errors would move it further.
    assert abs(accuracy - 0.9025) <= 0.0075


@pytest.mark.parametrize(
    ("name", "mean", "size", "resize", "classes"),
    [
        ("resnet20_cifar10", (0.485, 0.456, 0.406), 32, 32, 10),
        ("densenet100_cifar10", (0.4914, 0.4822, 0.4465), 32, 32, 10),
        ("densenet100_cifar100", (0.4914, 0.4822, 0.4465), 32, 32, 100),
        ("mobilenet_v2_imagenet", (128 / 255,) * 3, 224, 256, 1000),
    ],
)
def test_kit_pretrained_cfg(kit: Path, name, mean, size, resize, classes) -> None:
    model = load_model(name)
    cfg = model.pretrained_cfg
    assert cfg["mean"] == pytest.approx(mean)
    assert cfg["input_size"] == (3, size, size) and cfg["resize"] == resize
    assert cfg["num_classes"] == classes and cfg["interpolation"] == "bilinear"
    assert not model.training
    fm = adapt(model)
    assert fm.pretrained_cfg["mean"] == cfg["mean"] and fm.head.num_classes == classes


def test_kit_weights_by_path_and_by_file_name(kit: Path) -> None:
    x = torch.randn(2, 3, 32, 32)
    by_path = create("resnet20_cifar", weights=kit / "weights_cifar10_resnet20_akamaster.npz")
    by_name = create("resnet20_cifar", weights="weights_cifar10_resnet20_akamaster.npz")
    by_spec = load_model(kit / "weights_cifar10_resnet20_akamaster.npz")
    with torch.no_grad():
        torch.testing.assert_close(by_path(x), by_name(x))
        torch.testing.assert_close(by_path(x), by_spec(x))
    with np.load(kit / "weights_cifar10_resnet20_akamaster.npz") as z:
        torch.testing.assert_close(by_path.linear.weight, torch.from_numpy(z["linear.weight"]))


def test_densenet_features_are_the_dice_penultimate(kit: Path) -> None:
    model = load_model("densenet100_cifar10")
    images, _ = _images(kit, "cifar10_exact_sample.npz", 4)
    transform = transform_for(model)
    with torch.no_grad():
        h = adapt(model).features(torch.stack([transform(i) for i in images]))
    assert h.shape == (4, 342) and bool((h >= 0).all())
    with np.load(kit / "dice_feature_means.npz") as z:
        reference_mean = z["cifar10_densenet100"]
    # same scale as DICE's mean training feature (0.142 overall)
    assert 0.05 < float(h.mean()) < 0.4 and reference_mean.shape == (342,)
