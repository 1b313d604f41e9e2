"""extract() and the CLI on a real kit model and real images (20 exact CIFAR-10 test images)."""

from __future__ import annotations

import numpy as np
import torch

from shapeood.cli import main
from shapeood.data import ArrayDataset
from shapeood.features import FeatureCache, extract
from shapeood.models import adapt, load_model, transform_for


def test_resnet20_on_exact_cifar10_sample(kit, tmp_path):
    model = load_model("resnet20_cifar10")
    data = ArrayDataset(kit / "cifar10_exact_sample.npz", transform=transform_for(model))
    fs = extract(model, data, batch_size=8, cache=tmp_path, progress=False)
    assert fs.features.shape == (20, 64) and fs.logits.shape == (20, 10)
    assert fs.accuracy() == 1.0  # the kit README: 20/20 for ResNet-20
    assert bool((fs.features >= 0).all())  # pooled after a ReLU
    x = torch.stack([data[i][0] for i in range(20)])
    with torch.inference_mode():
        expected = model(x)
    torch.testing.assert_close(fs.logits, expected, rtol=1e-4, atol=1e-4)
    assert fs.meta["layer"] == adapt(model).layer_name
    assert fs.meta["model"] == "resnet20_cifar10"


def test_raw_images_get_the_model_preprocessing(kit, tmp_path):
    model = load_model("resnet20_cifar10")
    explicit = ArrayDataset(kit / "cifar10_exact_sample.npz", transform=transform_for(model))
    raw = ArrayDataset(kit / "cifar10_exact_sample.npz")
    a = extract(model, explicit, batch_size=10, cache=tmp_path, progress=False)
    b = extract(adapt(model), raw, batch_size=10, cache=False, progress=False)
    assert a.meta["key"] == b.meta["key"]  # same weights, layer, transform and data
    torch.testing.assert_close(a.features, b.features)


def test_cli_extract_then_cache_list_and_clear(kit, tmp_path, capsys):
    args = ["extract", "--model", "resnet20_cifar10", "--data", "cifar10_exact_sample",
            "--device", "cpu", "--batch-size", "8", "--cache-dir", str(tmp_path),
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "N        20" in out and "D        64" in out and "accuracy 100.00%" in out
    (entry,) = FeatureCache(tmp_path).list()
    assert entry.key in out and entry.complete
    assert main(["cache", "--dir", str(tmp_path), "list"]) == 0
    listing = capsys.readouterr().out
    assert entry.key in listing and "complete" in listing and "1 entries" in listing
    assert main(["cache", "--dir", str(tmp_path), "clear", "resnet20"]) == 0
    assert FeatureCache(tmp_path).list() == []
    assert main(["cache", "--dir", str(tmp_path), "clear", "nothing-here"]) == 1
    assert main(["extract", "--model", "resnet20_cifar10", "--data", "no_such_set"]) == 2
    assert "cannot resolve --data" in capsys.readouterr().err


def test_cli_extract_from_an_image_folder_and_an_image_list(kit, tmp_path, capsys):
    from PIL import Image

    with np.load(kit / "cifar10_exact_sample.npz") as z:
        images, labels = z["images"][:6], z["labels"][:6]
    lines = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "images" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
        lines.append(f"class{label}/{i}.png {label}")
    imglist = tmp_path / "list.txt"
    imglist.write_text("\n".join(lines) + "\n")
    common = ["--model", "resnet20_cifar10", "--device", "cpu", "--no-cache", "--quiet"]
    assert main(["extract", "--data", str(tmp_path / "images"), *common]) == 0
    assert "N        6" in capsys.readouterr().out
    assert main(["extract", "--data", str(imglist), "--root", str(tmp_path / "images"),
                 *common]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "N        6" in out and "accuracy 100.00%" in out and "(not cached)" in out
    assert main(["extract", "--data", str(imglist), *common]) == 2
    assert "--data-root" in capsys.readouterr().err
