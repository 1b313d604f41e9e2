"""Pixels to floats exactly as torchvision's ``ToTensor`` makes them: ``uint8 / 255``.

A division, never a multiplication by ``1/255``: in float32 the two differ for 126 of the 256
byte values (``x * (1/255)`` rounds twice), which is enough to flip saturated-score ties against
OpenOOD's numbers. torchvision's ``v2.ToDtype(float32, scale=True)`` multiplies, so shapeood's
pipelines use :class:`ToFloat` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def to_float(image: Any) -> torch.Tensor:
    """``uint8`` pixels (tensor, numpy array or PIL image) as float32 in [0, 1]: ``x / 255``.

    Tensors keep their layout ((3, H, W) stays (3, H, W)); PIL images and (H, W, C) arrays
    become (C, H, W) like ``ToTensor``. Floating tensors are returned as float32 unchanged.
    """
    if not isinstance(image, torch.Tensor):
        array = np.array(image) if not isinstance(image, np.ndarray) else image
        if array.ndim == 2:
            array = array[:, :, None]
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if image.is_floating_point():
        return image.to(torch.float32)
    if image.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {image.dtype}")
    return torch.div(image.to(torch.float32), 255.0)


class ToFloat(nn.Module):
    """Transform: uint8 image -> float32 in [0, 1] by ``x / 255`` (see :func:`to_float`)."""

    def forward(self, image: Any) -> torch.Tensor:
        return to_float(image).as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return "ToFloat(x / 255)"
