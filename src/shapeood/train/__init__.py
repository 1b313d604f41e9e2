"""Training with ISH (and plain cross-entropy): the ISH layers and the training loop.

``apply_ish(model, percentile=85, layers="head")`` converts the classifier head (or every
Linear/Conv2d with ``layers="all"``) to layers whose weight gradient uses ISH-shaped
activations; ``remove_ish(model)`` converts back. ``fit_model(model, data, config)`` /
``Trainer`` train with cross-entropy, plain or ISH (``TrainConfig(ish=True)``); recipes
(``get_recipe("cifar10_densenet_ish")``) bundle model, data, augmentation and settings.
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
from shapeood.train.recipes import Recipe, get_recipe, list_recipes, register_recipe

__all__ = [
    "ISHConv2d",
    "ISHLinear",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_ish",
    "fit_model",
    "get_recipe",
    "head_layer_name",
    "ish_layers",
    "list_recipes",
    "register_recipe",
    "remove_ish",
]
