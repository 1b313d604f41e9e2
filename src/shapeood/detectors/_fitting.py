"""Statistics that detectors learn from ID features."""

from __future__ import annotations

import numpy as np
import torch

from shapeood._validation import check_percentile


def activation_percentile(features: torch.Tensor, percentile: float, name: str) -> float:
    """``np.percentile(features.ravel(), p)`` over ALL values jointly (linear interpolation).

    The value is rounded to float32, the precision the features are clipped in.
    """
    p = check_percentile(percentile, name, upper_inclusive=True)
    values = features.detach().to("cpu", torch.float32).numpy().ravel()
    return float(np.float32(np.percentile(values, p)))
