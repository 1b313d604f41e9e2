"""Build models by name: offline-kit architectures, kit checkpoints, torchvision and timm.

``create(name)`` builds an architecture (``resnet{6n+2}_cifar``, ``densenet{6n+4}_cifar``,
``resnet18_32x32``, ``mobilenet_v2_tf``), optionally with weights; ``KIT_MODELS`` names the
pretrained models of the offline kit. ``shapeood.models.spec.load_model`` resolves every
``--model`` form on top of these. Every returned model carries ``model.pretrained_cfg``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shapeood.models.checkpoints import load_weights, read_checkpoint, strip_prefixes
from shapeood.models.cifar_resnet import CifarResNet
from shapeood.models.config import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENOOD_CIFAR10,
    OPENOOD_CIFAR100,
    TF_UINT8_MEAN,
    TF_UINT8_STD,
    make_cfg,
)
from shapeood.models.densenet import DenseNetBC
from shapeood.models.mobilenet_v2_tf import MobileNetV2TF
from shapeood.models.resnet18_32x32 import ResNet18_32x32

Weights = str | Path | Mapping[str, torch.Tensor] | None


@dataclass(frozen=True)
class KitModel:
    """A pretrained model of the offline kit: architecture, weights file, classes."""

    architecture: str
    weights_file: str
    num_classes: int
    description: str


KIT_MODELS: dict[str, KitModel] = {
    "resnet20_cifar10": KitModel(
        "resnet20_cifar",
        "weights_cifar10_resnet20_akamaster.npz",
        10,
        "CIFAR-10 ResNet-20 (akamaster, 91.78% clean test)",
    ),
    "resnet32_cifar10": KitModel(
        "resnet32_cifar",
        "weights_cifar10_resnet32_akamaster.npz",
        10,
        "CIFAR-10 ResNet-32 (akamaster, 92.78% clean test)",
    ),
    "resnet56_cifar10": KitModel(
        "resnet56_cifar",
        "weights_cifar10_resnet56_akamaster.npz",
        10,
        "CIFAR-10 ResNet-56 (akamaster, 93.62% clean test)",
    ),
    "densenet100_cifar10": KitModel(
        "densenet100_cifar",
        "weights_cifar10_densenet100_dice.npz",
        10,
        "CIFAR-10 DenseNet-BC-100 k=12 (DICE checkpoint)",
    ),
    "densenet100_cifar100": KitModel(
        "densenet100_cifar",
        "weights_cifar100_densenet100_dice.npz",
        100,
        "CIFAR-100 DenseNet-BC-100 k=12 (DICE checkpoint)",
    ),
    "mobilenet_v2_imagenet": KitModel(
        "mobilenet_v2_tf",
        "weights_imagenet_mobilenetv2_coral.npz",
        1000,
        "ImageNet-1k MobileNetV2 1.0 224 (TensorFlow, dequantised coral model)",
    ),
}


def _cifar_resnet(depth: int, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    cfg = make_cfg(IMAGENET_MEAN, IMAGENET_STD, 32, num_classes)
    return CifarResNet(depth, num_classes), cfg


def _densenet(depth: int, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    return DenseNetBC(depth, num_classes), make_cfg(CIFAR_MEAN, CIFAR_STD, 32, num_classes)


def _resnet18_32x32(num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    # OpenOOD normalises by the ID dataset: CIFAR-100 statistics for 100 classes, else CIFAR-10.
    mean, std = OPENOOD_CIFAR100 if num_classes == 100 else OPENOOD_CIFAR10
    return ResNet18_32x32(num_classes), make_cfg(mean, std, 32, num_classes)


def _mobilenet_v2_tf(num_classes: int, graph: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    cfg = make_cfg(TF_UINT8_MEAN, TF_UINT8_STD, 224, num_classes, resize=256)
    return MobileNetV2TF(num_classes, graph=graph), cfg


# name pattern -> (builder(match, num_classes, meta), default num_classes, head weight key)
_Builder = Callable[[re.Match, int, dict], tuple[nn.Module, dict[str, Any]]]
ARCHITECTURES: list[tuple[re.Pattern, _Builder, int, str]] = [
    (
        re.compile(r"resnet(\d+)_cifar"),
        lambda m, c, _: _cifar_resnet(int(m[1]), c),
        10,
        "linear.weight",
    ),
    (re.compile(r"densenet(\d+)_cifar"), lambda m, c, _: _densenet(int(m[1]), c), 10, "fc.weight"),
    (re.compile(r"resnet18_32x32"), lambda m, c, _: _resnet18_32x32(c), 10, "fc.weight"),
    (
        re.compile(r"mobilenet_v2_tf"),
        lambda m, c, meta: _mobilenet_v2_tf(c, (meta.get("graph") or {}).get("layers")),
        1000,
        "classifier.weight",
    ),
]
ARCHITECTURE_NAMES = (
    "resnet{20,32,44,56,110,...}_cifar",
    "densenet100_cifar",
    "resnet18_32x32",
    "mobilenet_v2_tf",
)


def _match_architecture(name: str) -> tuple[re.Match, _Builder, int, str] | None:
    for pattern, builder, default_classes, head_key in ARCHITECTURES:
        match = pattern.fullmatch(name)
        if match:
            return match, builder, default_classes, head_key
    return None


def create(name: str, weights: Weights = None, num_classes: int | None = None) -> nn.Module:
    """Build an offline-kit architecture by name, random init or with ``weights``.

    ``weights`` is a kit ``.npz``, an original ``.pth``/``.th``/``.pth.tar`` checkpoint (a state
    dict, possibly under ``'state_dict'`` and with ``module.`` prefixes), or a state dict.
    ``num_classes`` defaults to the checkpoint's head (or 10 for CIFAR, 1000 for ImageNet).
    """
    found = _match_architecture(name)
    if found is None:
        raise ValueError(
            f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURE_NAMES)} "
            "(or use load_model('torchvision:NAME' | 'timm:NAME' | kit name))"
        )
    match, builder, default_classes, head_key = found
    state: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = {}
    source = "state dict"
    if isinstance(weights, Mapping):
        state = strip_prefixes(weights)
    elif weights is not None:
        source = str(weights)
        state, meta = read_checkpoint(weights)
    if num_classes is None:
        num_classes = default_classes
        if state is not None and head_key in state:
            num_classes = int(state[head_key].shape[0])
    model, cfg = builder(match, int(num_classes), meta)
    if state is not None:
        if isinstance(model, MobileNetV2TF):
            state = model.convert_kit_state_dict(state)
        load_weights(model, state, source=f"weights from {source}")
    model.eval()
    cfg["architecture"] = name
    model.pretrained_cfg = cfg
    return model


def list_models() -> list[str]:
    """Names of the pretrained models of the offline kit (for ``load_model``)."""
    return list(KIT_MODELS)


def infer_architecture(state: Mapping[str, torch.Tensor]) -> str:
    """Guess the kit architecture name from a state dict's keys."""
    if "l00.weight" in state:
        return "mobilenet_v2_tf"
    if "block1.layer.0.conv1.weight" in state:
        layers = {k.split(".")[2] for k in state if k.startswith("block1.layer.")}
        return f"densenet{6 * len(layers) + 4}_cifar"
    if "linear.weight" in state and "layer3.0.conv1.weight" in state:
        blocks = {k.split(".")[1] for k in state if k.startswith("layer1.")}
        return f"resnet{6 * len(blocks) + 2}_cifar"
    if "layer4.1.conv2.weight" in state and "fc.weight" in state:
        return "resnet18_32x32"
    raise ValueError(
        "cannot tell the architecture of this checkpoint from its keys; call "
        f"create(name, weights=path) with one of {', '.join(ARCHITECTURE_NAMES)}"
    )


def torchvision_cfg(name: str, weights: Any) -> dict[str, Any]:
    """``pretrained_cfg`` of a torchvision weights enum (its preset transforms), no download."""
    import torchvision

    enum = torchvision.models.get_model_weights(name).verify(weights)
    preset = enum.transforms()
    return {
        "mean": tuple(preset.mean),
        "std": tuple(preset.std),
        "input_size": (3, preset.crop_size[0], preset.crop_size[-1]),
        "resize": int(preset.resize_size[0]),
        "num_classes": len(enum.meta.get("categories") or []) or None,
        "interpolation": preset.interpolation.value,
        "weights": str(enum),
    }


def _head_classes(model: nn.Module) -> int | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


__all__ = ["KIT_MODELS", "KitModel", "create", "infer_architecture", "list_models"]
