"""Types shared by every room: closed vocabularies (``Literal`` and their values) and the
``Protocol``s of a feature model and a feature set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

if TYPE_CHECKING:  # the names below are for annotations only: importing this costs no torch
    import torch
    from torch import nn

    from shapeood.head import LinearHead

FprConvention = Literal["openood", "classic", "nearest"]
ScoreName = Literal["msp", "max_logit", "energy"]
BenchmarkFamily = Literal["cifar", "imagenet", "custom"]
FitSplit = Literal["train", "val"]
CriterionName = Literal["auroc", "fpr95"]
Device = Literal["cpu", "cuda", "mps"] | str  # also "cuda:1" and torch.device strings

CONVENTIONS: tuple[str, ...] = get_args(FprConvention)
SCORE_NAMES: tuple[str, ...] = get_args(ScoreName)
FAMILIES: tuple[str, ...] = get_args(BenchmarkFamily)
CRITERIA: tuple[str, ...] = get_args(CriterionName)


class FeatureModelLike(Protocol):
    """What the pipeline needs of a model: pooled features, the linear head, preprocessing.

    ``shapeood.models.adapt`` turns any classifier into one (``FeatureModel``).
    """

    model: nn.Module
    head: LinearHead
    pretrained_cfg: dict[str, Any]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (N, D) of a normalised image batch."""
        ...

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, logits)`` of one forward pass."""
        ...


class FeatureSetLike(Protocol):
    """Rows of one dataset: pooled ``features`` (N, D), plain ``logits`` (N, C), ``labels`` (N,)
    (-1 where unknown); ``shapeood.features.FeatureSet`` is one."""

    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int: ...
