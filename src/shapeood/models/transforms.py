"""Preprocessing pipelines built from a model's ``pretrained_cfg``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn
from torchvision.transforms import InterpolationMode, v2

from shapeood.data.pixels import ToFloat
from shapeood.models.config import complete_cfg


def _cfg_of(model_or_cfg: nn.Module | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(model_or_cfg, Mapping):
        return complete_cfg(model_or_cfg, model_or_cfg.get("num_classes"))
    cfg = getattr(model_or_cfg, "pretrained_cfg", None)
    if cfg is None:
        raise ValueError(
            f"{type(model_or_cfg).__name__} has no pretrained_cfg: load it with "
            "shapeood.models.load_model/create/adapt, or pass a dict with mean, std, input_size"
        )
    return complete_cfg(cfg, cfg.get("num_classes"))


def transform_for(
    model_or_cfg: nn.Module | Mapping[str, Any],
    resize: int | None = None,
    crop: int | Sequence[int] | None = None,
) -> v2.Compose:
    """``Resize(resize) -> CenterCrop(crop) -> float in [0, 1] -> Normalize(mean, std)``.

    Accepts a PIL image or a uint8 (3, H, W) tensor. ``resize`` (shorter side, antialiased, with
    the cfg's interpolation) defaults to ``cfg["resize"]``, ``crop`` to ``cfg["input_size"][1:]``.
    The pipeline's ``repr`` is stable and identifies the preprocessing in cache keys.
    """
    cfg = _cfg_of(model_or_cfg)
    size = int(cfg["resize"] if resize is None else resize)
    crop_size = list(cfg["input_size"][1:]) if crop is None else crop
    if isinstance(crop_size, int):
        crop_size = [crop_size, crop_size]
    crop_size = [int(c) for c in crop_size]
    if size <= 0 or min(crop_size) <= 0:
        raise ValueError(f"resize and crop must be positive, got resize={size}, crop={crop_size}")
    try:
        interpolation = InterpolationMode(str(cfg["interpolation"]).lower())
    except ValueError as err:
        modes = [m.value for m in InterpolationMode]
        raise ValueError(
            f"unknown interpolation {cfg['interpolation']!r} in pretrained_cfg; use one of {modes}"
        ) from err
    return v2.Compose(
        [
            v2.Resize(size, interpolation=interpolation, antialias=True),
            v2.CenterCrop(crop_size),
            v2.ToImage(),
            ToFloat(),  # x / 255 exactly as ToTensor (v2.ToDtype multiplies)
            v2.Normalize(mean=list(cfg["mean"]), std=list(cfg["std"])),
        ]
    )
