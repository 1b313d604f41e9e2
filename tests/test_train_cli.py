"""``shapeood train`` and the recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from shapeood.cli import main
from shapeood.train import get_recipe, list_recipes
from shapeood.train.recipes import cifar_augmentation, imagenet_augmentation, training_data


def tiny_npz(path: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        labels=rng.integers(0, 10, n),
    )
    return path


def test_train_command_writes_weights_and_resumes(tmp_path: Path, capsys) -> None:
    data = tiny_npz(tmp_path / "train.npz")
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "resnet20_cifar",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--max-steps-per-epoch",
        "1",
        "--ish",
        "--lr",
        "0.05",
        "--no-progress",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and Path(summary["weights"]) == out / "model.pt"
    first = torch.load(out / "model.pt", weights_only=True)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    assert checkpoint["config"]["ish"] is True and checkpoint["config"]["lr"] == 0.05
    assert checkpoint["epoch"] == 2
    # Running the same command again finds the finished checkpoint and trains no further.
    assert main(argv) == 0
    again = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(first[k], again[k]) for k in first)
    # Other settings on the same folder are refused with a clear message.
    assert main([*argv[:-1], "--lr", "0.1", "--no-progress"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_train_command_needs_model_data_and_out(capsys) -> None:
    assert main(["train", "--model", "resnet20_cifar"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train", "--recipe", "nope", "--out", "x"]) == 2
    assert "unknown recipe" in capsys.readouterr().err
    assert main(["train", "--list"]) == 0
    assert "cifar10_densenet_ish" in capsys.readouterr().out


def test_paper_recipe_settings() -> None:
    recipe = get_recipe("imagenet_resnet50_ish")
    cfg = recipe.config
    assert (cfg.lr, cfg.epochs, cfg.batch_size, recipe.processes) == (0.003, 10, 128, 4)
    assert (cfg.weight_decay, cfg.head_weight_decay, cfg.momentum) == (5e-4, 5e-5, 0.9)
    assert cfg.nesterov and cfg.ish and cfg.ish_percentile == 85 and cfg.ish_layers == "head"
    assert recipe.model == "torchvision:resnet50" and recipe.weights == "IMAGENET1K_V1"
    plain = get_recipe("imagenet_resnet50_plain").config
    assert plain == cfg.replace(ish=False)
    cifar, cifar_plain = get_recipe("cifar10_densenet_ish"), get_recipe("cifar10_densenet_plain")
    assert cifar.config.ish and cifar_plain.config == cifar.config.replace(ish=False)
    assert set(list_recipes()) >= {"cifar10_densenet_ish", "imagenet_resnet50_ish"}


def test_augmentations() -> None:
    cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32)}
    image = torch.arange(3 * 32 * 32, dtype=torch.int64).remainder(256).to(torch.uint8)
    image = image.reshape(3, 32, 32)
    torch.manual_seed(0)
    outs = [cifar_augmentation(cfg)(image) for _ in range(6)]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.float32 for o in outs)
    assert min(float(o.min()) for o in outs) >= -2.0 and max(float(o.max()) for o in outs) <= 2.0
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # random crop / flip
    big = {**cfg, "input_size": (3, 24, 24)}
    out = imagenet_augmentation(big)(torch.zeros(3, 64, 48, dtype=torch.uint8))
    assert out.shape == (3, 24, 24)


def test_kit_training_data(kit: Path) -> None:
    recipe = get_recipe("cifar10_densenet_ish")
    cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32)}
    data = training_data(recipe.data, cifar_augmentation(cfg))
    assert len(data) == 10000
    image, label = data[0]
    assert image.shape == (3, 32, 32) and 0 <= int(label) < 10
    with pytest.raises(FileNotFoundError, match="not found"):
        training_data("nowhere/at/all", None)
    with pytest.raises(ValueError, match="data-root"):
        training_data(kit / "openood_imglists" / "cifar10" / "train_cifar10.txt", None)
