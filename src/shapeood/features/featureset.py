"""``FeatureSet``: what one pass of the backbone over one dataset produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class FeatureSet:
    """Pooled penultimate features, logits and labels of one dataset under one model.

    ``features`` (N, D) float32, ``logits`` (N, C) float32, ``labels`` (N,) int64 (-1 for OOD
    or unlabelled samples), ``meta`` a JSON-serialisable dict (model, layer, transform and dataset
    identity, cache key). Tensors live on the CPU.
    """

    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.features.shape[0]
        if self.features.ndim != 2 or self.logits.ndim != 2 or self.labels.ndim != 1:
            raise ValueError(
                "FeatureSet needs features (N, D), logits (N, C) and labels (N,); got "
                f"{tuple(self.features.shape)}, {tuple(self.logits.shape)}, "
                f"{tuple(self.labels.shape)}"
            )
        if self.logits.shape[0] != n or self.labels.shape[0] != n:
            raise ValueError(
                f"FeatureSet rows disagree: features {n}, logits {self.logits.shape[0]}, "
                f"labels {self.labels.shape[0]}"
            )

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def predictions(self) -> torch.Tensor:
        """Class predicted by the plain network: ``argmax(logits)``."""
        return self.logits.argmax(dim=1)

    def accuracy(self) -> float:
        """Top-1 accuracy of the plain network over the rows with a label >= 0."""
        from shapeood.metrics import accuracy

        return accuracy(self.predictions, self.labels, labelled_only=True)

    def subset(self, index: torch.Tensor | slice) -> FeatureSet:
        """Rows ``index`` as a new FeatureSet (meta is shared, marked with the subset size)."""
        meta = dict(self.meta)
        sub = FeatureSet(self.features[index], self.logits[index], self.labels[index], meta)
        meta["subset_of"] = self.meta.get("key")
        meta["num_samples"] = len(sub)
        return sub
