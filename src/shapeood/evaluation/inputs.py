"""What ``evaluate`` is given: a model, a benchmark, method names, per-method parameters."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from torch.utils.data import Subset

from shapeood.detectors import detector_class, list_detectors


def resolve_model(model: Any, weights: Any = None) -> Any:
    """A FeatureModel from an ``nn.Module``, a FeatureModel or a spec string (``load_model``)."""
    from shapeood.features import as_feature_model

    if isinstance(model, (str, os.PathLike)):
        from shapeood.models import load_model

        model = load_model(str(model), weights=weights)
    elif weights is not None:
        raise ValueError(
            "weights= only applies when model is a spec string such as 'resnet20_cifar10'"
        )
    return as_feature_model(model)


def resolve_benchmark(benchmark: Any, data_root: Any = None) -> Any:
    """A Benchmark from a Benchmark, a built-in name or a YAML/TOML benchmark file."""
    from shapeood.data import Benchmark, get_benchmark

    if isinstance(benchmark, Benchmark):
        return benchmark
    if isinstance(benchmark, (str, os.PathLike)):
        return get_benchmark(str(benchmark), data_root=data_root)
    raise ValueError(
        f"benchmark must be a Benchmark, a built-in name (shapeood list benchmarks) or a "
        f"benchmark file, got {type(benchmark).__name__}"
    )


def resolve_methods(methods: str | Iterable[str]) -> list[str]:
    """Registry names from ``"all"``, ``"a,b,c"`` or a list (aliases such as ``ebo`` allowed)."""
    if isinstance(methods, str):
        if methods.strip().lower() == "all":
            return list(list_detectors())
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    names = []
    for method in methods:
        name = detector_class(str(method)).name
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("no method given: use methods='all' or names such as 'energy,ash_s'")
    return names


def method_params(name: str, family: str, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parameters the evaluator uses: the family preset, then ``user`` (``family_params``)."""
    return detector_class(name).family_params(family, user)


def method_grid(name: str, params: Mapping[str, Any], user_grid: Any = None) -> dict[str, list]:
    """The APS grid: the user's, else the method's for ``params`` (``aps_grid``)."""
    if user_grid is not None:
        return {k: list(v) for k, v in user_grid.items()}
    return detector_class(name).aps_grid(params)


def prepare_dataset(dataset: Any, transform: Any, limit: int | None) -> Any:
    """``dataset`` capped at ``limit`` evenly spaced rows, with ``transform`` unless it has one."""
    from shapeood.features.extraction import TransformedDataset
    from shapeood.features.keys import dataset_transform

    if limit is not None and len(dataset) > limit:
        rows = np.unique(np.linspace(0, len(dataset) - 1, int(limit)).round().astype(np.int64))
        dataset = Subset(dataset, rows.tolist())
    if dataset_transform(dataset) is None:
        dataset = TransformedDataset(dataset, transform)
    return dataset


def limit_for(max_samples: Any, role: str) -> int | None:
    """The cap of one role from an int or a ``{role: n}`` mapping (``ood`` covers near/far)."""
    if max_samples is None:
        return None
    if isinstance(max_samples, Mapping):
        fallback = "ood" if role in ("near", "far") else role
        value = max_samples.get(role, max_samples.get(fallback))
        return None if value is None else int(value)
    return int(max_samples)
