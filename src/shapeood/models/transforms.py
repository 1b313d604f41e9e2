"""Preprocessing pipelines built from a model's ``pretrained_cfg``.

:func:`transform_for` returns a :class:`ModelTransform`: the steps of a torchvision ``v2``
pipeline described by plain values, with the ``repr`` of the equivalent ``v2.Compose`` (it
identifies the preprocessing in feature-cache keys). torchvision is imported only when a step
first runs, so that a process that only reads cached features never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from shapeood.data.pixels import ToFloat
from shapeood.models.config import complete_cfg

# torchvision's InterpolationMode values, in its order.
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic", "box", "hamming", "lanczos")

__all__ = ["INTERPOLATIONS", "ModelTransform", "transform_for"]


class _Deferred:
    """One torchvision ``v2`` transform, built on its first call; picklable before and after."""

    def __init__(self) -> None:
        self._impl: Any = None

    def _build(self) -> Any:
        raise NotImplementedError

    def _fields(self) -> str:
        raise NotImplementedError

    def __call__(self, image: Any) -> Any:
        if self._impl is None:
            self._impl = self._build()
        return self._impl(image)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_impl": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._fields()})"


class Resize(_Deferred):
    """``v2.Resize(size, interpolation, antialias=True)``: the shorter side to ``size``."""

    def __init__(self, size: int, interpolation: str) -> None:
        super().__init__()
        self.size = [int(size)]
        self.interpolation = interpolation

    def _build(self) -> Any:
        from torchvision.transforms import InterpolationMode, v2

        mode = InterpolationMode(self.interpolation)
        return v2.Resize(self.size, interpolation=mode, antialias=True)

    def _fields(self) -> str:
        mode = self.interpolation.upper().replace("-", "_")
        return f"size={self.size}, interpolation=InterpolationMode.{mode}, antialias=True"


class CenterCrop(_Deferred):
    """``v2.CenterCrop(size)`` with ``size = [height, width]`` (or ``[side]``: a square)."""

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        sides = [int(s) for s in size]
        if len(sides) not in (1, 2):
            raise ValueError(f"crop must be one size or (height, width), got {list(size)}")
        # as torchvision holds it: a given [h, w] list stays a list, one side becomes (s, s)
        self.size: Any = (sides[0], sides[0]) if len(sides) == 1 else sides

    def _build(self) -> Any:
        from torchvision.transforms import v2

        return v2.CenterCrop(self.size)

    def _fields(self) -> str:
        return f"size={self.size}"


class ToImage(_Deferred):
    """``v2.ToImage()``: a PIL image, array or tensor as a (C, H, W) image tensor."""

    def _build(self) -> Any:
        from torchvision.transforms import v2

        return v2.ToImage()

    def _fields(self) -> str:
        return ""


class Normalize(_Deferred):
    """``v2.Normalize(mean, std)``: ``(x - mean[c]) / std[c]`` per channel ``c``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean = list(mean)
        self.std = list(std)

    def _build(self) -> Any:
        from torchvision.transforms import v2

        return v2.Normalize(mean=self.mean, std=self.std)

    def _fields(self) -> str:
        return f"mean={self.mean}, std={self.std}, inplace=False"


class ModelTransform:
    """The steps of :func:`transform_for`, applied in order (as ``v2.Compose`` does).

    ``transforms`` lists them; ``repr`` equals the ``repr`` of the ``v2.Compose`` of the same
    torchvision transforms, so cache keys do not depend on how the pipeline is held.
    """

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Any) -> Any:
        fused = self._fused(image)
        if fused is not None:
            return fused
        for step in self.transforms:
            image = step(image)
        return image

    def _fused(self, image: Any) -> torch.Tensor | None:
        """``(x / 255 - mean[c]) / std[c]`` in three tensor ops where the steps would do just
        that: :func:`transform_for`'s five steps on a uint8 ``(3, H, W)`` tensor whose shorter
        side is the resize and whose size is the crop. torchvision's ``Resize`` then returns its
        input, ``CenterCrop`` slices all of it and ``ToImage`` only wraps it, so the same
        division, subtraction and division (``v2.Normalize``'s ``sub`` then ``div_``) give the
        same bits, without the per-step dispatch (about 240 of 265 us on a 32 x 32 image).
        None for any other input or pipeline."""
        steps = self.transforms
        if (
            not isinstance(image, torch.Tensor)
            or image.dtype != torch.uint8
            or image.ndim != 3
            or image.shape[0] != 3
            or [type(step) for step in steps] != _FUSABLE
        ):
            return None
        resize, crop, _, _, normalize = steps
        height, width = int(image.shape[1]), int(image.shape[2])
        if len(resize.size) != 1 or min(height, width) != resize.size[0]:
            return None
        if [int(side) for side in crop.size] != [height, width]:
            return None
        pixels = image.as_subclass(torch.Tensor)
        mean = torch.as_tensor(normalize.mean, dtype=torch.float32, device=pixels.device)
        std = torch.as_tensor(normalize.std, dtype=torch.float32, device=pixels.device)
        if mean.numel() not in (1, 3) or std.numel() not in (1, 3) or not all(normalize.std):
            return None  # the steps' own errors and broadcasting apply
        shifted = torch.div(pixels.to(torch.float32), 255.0).sub(mean.view(-1, 1, 1))
        return shifted.div_(std.view(-1, 1, 1))

    def __repr__(self) -> str:
        lines = "".join(f"      {step!r}\n" for step in self.transforms)
        return f"Compose(\n{lines})"


_FUSABLE = [Resize, CenterCrop, ToImage, ToFloat, Normalize]


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
) -> ModelTransform:
    """``Resize(resize) -> CenterCrop(crop) -> float in [0, 1] -> Normalize(mean, std)``.

    Accepts a PIL image or a uint8 (3, H, W) tensor. ``resize`` (shorter side, antialiased, with
    the cfg's interpolation) defaults to ``cfg["resize"]``, ``crop`` to ``cfg["input_size"][1:]``.
    The pixels become floats by ``x / 255`` (:class:`~shapeood.data.pixels.ToFloat`). The
    pipeline's ``repr`` is stable and identifies the preprocessing in cache keys.

    >>> t = transform_for({"mean": (0.5,) * 3, "std": (0.25,) * 3, "input_size": (3, 32, 32)})
    >>> print(t)
    Compose(
          Resize(size=[32], interpolation=InterpolationMode.BILINEAR, antialias=True)
          CenterCrop(size=[32, 32])
          ToImage()
          ToFloat(x / 255)
          Normalize(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], inplace=False)
    )
    """
    cfg = _cfg_of(model_or_cfg)
    size = int(cfg["resize"] if resize is None else resize)
    crop_size = list(cfg["input_size"][1:]) if crop is None else crop
    if isinstance(crop_size, int):
        crop_size = [crop_size, crop_size]
    crop_size = [int(c) for c in crop_size]
    if len(crop_size) not in (1, 2):
        raise ValueError(f"crop must be one size or (height, width), got {crop_size}")
    if size <= 0 or min(crop_size) <= 0:
        raise ValueError(f"resize and crop must be positive, got resize={size}, crop={crop_size}")
    interpolation = str(cfg["interpolation"]).lower()
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {cfg['interpolation']!r} in pretrained_cfg; use one of "
            f"{list(INTERPOLATIONS)}"
        )
    return ModelTransform(
        [
            Resize(size, interpolation),
            CenterCrop(crop_size),
            ToImage(),
            ToFloat(),  # x / 255 exactly as ToTensor (v2.ToDtype multiplies)
            Normalize(mean=list(cfg["mean"]), std=list(cfg["std"])),
        ]
    )
