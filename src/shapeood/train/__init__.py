"""Training with ISH (and plain cross-entropy): the ISH layers and the training loop.

``apply_ish(model, percentile=0.85, layers="head")`` converts the classifier head (or every
Linear/Conv2d with ``layers="all"``) to layers whose weight gradient uses ISH-shaped
activations; ``remove_ish(model)`` converts back.
"""

from shapeood.train.ish import (
    ISHConv2d,
    ISHLinear,
    apply_ish,
    head_layer_name,
    ish_layers,
    remove_ish,
)
from shapeood.train.loop import TrainConfig, Trainer, TrainResult, fit_model

__all__ = [
    "ISHConv2d",
    "ISHLinear",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_ish",
    "fit_model",
    "head_layer_name",
    "ish_layers",
    "remove_ish",
]
