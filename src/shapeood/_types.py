"""Names of the closed vocabularies shared by every room (``Literal`` types and their values)."""

from __future__ import annotations

from typing import Literal, get_args

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
