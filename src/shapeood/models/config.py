"""Preprocessing descriptions (``pretrained_cfg``) carried by every model.

A ``pretrained_cfg`` is a plain dict with at least ``mean``, ``std`` (per channel, for inputs
in [0, 1]), ``input_size`` ``(3, H, W)`` (the centre crop), ``resize`` (shorter side before
the crop), ``num_classes`` and ``interpolation`` (``"bilinear"``, ``"bicubic"``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The statistics the DICE DenseNet checkpoints were trained and evaluated with.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
# OpenOOD v1.5 ``normalization_dict`` entries.
OPENOOD_CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
OPENOOD_CIFAR100 = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
# TensorFlow's MobileNet input scaling (x - 128) / 128 written for x / 255 in [0, 1].
TF_UINT8_MEAN = (128 / 255,) * 3
TF_UINT8_STD = (128 / 255,) * 3

REQUIRED_KEYS = ("mean", "std", "input_size", "resize", "num_classes", "interpolation")


def make_cfg(
    mean: tuple[float, ...],
    std: tuple[float, ...],
    size: int,
    num_classes: int,
    resize: int | None = None,
    interpolation: str = "bilinear",
    **extra: Any,
) -> dict[str, Any]:
    """A complete ``pretrained_cfg`` for square ``size`` x ``size`` inputs."""
    return {
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
        "input_size": (3, int(size), int(size)),
        "resize": int(size if resize is None else resize),
        "num_classes": int(num_classes),
        "interpolation": interpolation,
        **extra,
    }


def imagenet_cfg(num_classes: int = 1000, **extra: Any) -> dict[str, Any]:
    """ImageNet defaults: Resize(256) + CenterCrop(224), ImageNet mean/std, bilinear."""
    return make_cfg(IMAGENET_MEAN, IMAGENET_STD, 224, num_classes, resize=256, **extra)


def complete_cfg(cfg: Mapping[str, Any] | None, num_classes: int | None) -> dict[str, Any]:
    """Fill the missing keys of ``cfg`` (a timm or user dict) with ImageNet defaults.

    timm describes the resize by ``crop_pct``: ``resize = floor(crop / crop_pct)``.
    """
    out: dict[str, Any] = dict(cfg or {})
    defaults = imagenet_cfg(num_classes or 1000)
    if "input_size" in out:
        out["input_size"] = tuple(int(v) for v in out["input_size"])
        if len(out["input_size"]) != 3:
            raise ValueError(
                f"pretrained_cfg input_size must be (C, H, W), got {out['input_size']}"
            )
    else:
        out["input_size"] = defaults["input_size"]
    if out.get("resize") is None:
        crop = out["input_size"][-1]
        crop_pct = out.get("crop_pct")
        if crop_pct:
            out["resize"] = math.floor(crop / float(crop_pct))
        elif "input_size" in (cfg or {}):
            out["resize"] = int(crop)
        else:
            out["resize"] = defaults["resize"]
    for key in ("mean", "std"):
        out[key] = tuple(float(v) for v in out.get(key, defaults[key]))
    if not out.get("num_classes"):
        out["num_classes"] = int(num_classes or defaults["num_classes"])
    out["interpolation"] = str(out.get("interpolation") or "bilinear")
    return out
