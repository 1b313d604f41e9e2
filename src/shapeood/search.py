"""APS: OpenOOD's automatic hyperparameter search, on cached features.

For every point of a method's grid (``Detector.aps_grid`` or a user grid) the detector is
fitted and scored on ID-val and OOD-val; the point with the highest criterion value wins. The
``criterion`` is ``"auroc"`` (OpenOOD's, the default), ``"fpr95"`` (the lowest FPR@95 under the
OpenOOD convention, searched as ``-FPR@95``) or any callable ``(id_scores, ood_scores) -> float``
where higher is better. Grid points are visited in ``itertools.product`` order of the grid's
keys and values as given; a later point must be strictly better to replace the current best, so
**ties go to the first grid point**. Feature-space methods run on cached features (no network
pass); ODIN perturbs inputs and is searched through the model with ``aps_search_inputs`` (all
grid points in one pass over each val set, ``shapeood.features.perturbation``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from shapeood import metrics
from shapeood._types import CRITERIA, CriterionName
from shapeood.detectors import Detector, create_detector, detector_class

ScorePair = tuple[torch.Tensor, torch.Tensor]
CriterionFn = Callable[[Any, Any], float]
Criterion = CriterionName | CriterionFn


def _negative_fpr95(id_scores: Any, ood_scores: Any) -> float:
    """``-FPR@95`` (OpenOOD convention): higher is better."""
    return -metrics.fpr_at_95(id_scores, ood_scores, convention="openood")


def resolve_criterion(criterion: Criterion) -> tuple[str, CriterionFn]:
    """``(label, fn)`` for ``"auroc"``, ``"fpr95"`` or a callable (higher = better)."""
    if callable(criterion):
        return getattr(criterion, "__name__", "criterion"), criterion
    if criterion == "auroc":
        return "auroc", metrics.auroc
    if criterion == "fpr95":
        return "fpr95", _negative_fpr95
    raise ValueError(
        f"unknown APS criterion {criterion!r}: use {' or '.join(CRITERIA)} or a callable "
        "(id_scores, ood_scores) -> float where higher is better"
    )


@dataclass
class SearchResult:
    """Outcome of an APS search.

    ``best_params``: the winning grid point merged into the base parameters; ``best_auroc``:
    its validation AUROC in [0, 1]; ``best_value``: its criterion value; ``table``: one row per
    grid point (parameters, ``auroc``, ``fpr95`` under the OpenOOD convention, ``criterion``
    value, ``best`` flag) in visiting order.
    """

    method: str
    best_params: dict[str, Any]
    best_auroc: float
    table: pd.DataFrame = field(repr=False)
    criterion: str = "auroc"
    best_value: float = float("nan")


def grid_points(grid: Mapping[str, Iterable[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid`` in product order (first key varies slowest)."""
    if not grid:
        return [{}]
    keys = list(grid)
    values = []
    for key in keys:
        options = list(grid[key])
        if not options:
            raise ValueError(f"the grid for {key!r} is empty: give at least one value")
        values.append(options)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def resolve_grid(
    name: str, grid: Mapping[str, Iterable[Any]] | None, params: Mapping[str, Any] | None = None
) -> dict[str, list]:
    """The user grid when given, else the method's ``aps_grid(params)``; unknown keys raise."""
    cls = detector_class(name)
    chosen = cls.aps_grid(params) if grid is None else {k: list(v) for k, v in grid.items()}
    valid = cls._param_names()
    unknown = [k for k in chosen if k not in valid]
    if unknown:
        raise ValueError(
            f"grid keys {unknown} are not parameters of {name!r}; valid parameters: {valid}"
        )
    return chosen


def run_grid(
    name: str,
    grid: Mapping[str, Iterable[Any]],
    score_point: Callable[[dict[str, Any]], ScorePair],
    base_params: Mapping[str, Any] | None = None,
    criterion: Criterion = "auroc",
) -> SearchResult:
    """Score every grid point with ``score_point(params) -> (id_scores, ood_scores)``."""
    label, value_of = resolve_criterion(criterion)
    base = dict(base_params or {})
    points = grid_points(grid)
    rows = []
    best_index, best_value = 0, float("-inf")
    for index, point in enumerate(points):
        id_scores, ood_scores = score_point({**base, **point})
        value = float(value_of(id_scores, ood_scores))
        auroc = metrics.auroc(id_scores, ood_scores)
        fpr = metrics.fpr_at_95(id_scores, ood_scores, convention="openood")
        rows.append({**point, "auroc": auroc, "fpr95": fpr, "criterion": value})
        if value > best_value:  # strict: ties keep the first grid point
            best_index, best_value = index, value
    table = pd.DataFrame(rows)
    table["best"] = [i == best_index for i in range(len(rows))]
    best = rows[best_index]
    return SearchResult(
        name, {**base, **points[best_index]}, float(best["auroc"]), table, label, best_value
    )


def _features(x: Any) -> Any:
    return getattr(x, "features", x)


def _plain_logits(x: Any) -> Any:
    """The cached plain logits of a ``FeatureSet`` (None for bare features)."""
    return getattr(x, "logits", None) if hasattr(x, "features") else None


def aps_search(
    method: str | Detector,
    head: Any,
    id_val: Any,
    ood_val: Any,
    *,
    grid: Mapping[str, Iterable[Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    fit_features: Any = None,
    fit_labels: Any = None,
    criterion: Criterion = "auroc",
) -> SearchResult:
    """Pick the hyperparameters of ``method`` that maximise ``criterion(ID-val, OOD-val)``.

    Args:
        method: a registry name or a Detector (its parameters become the base parameters).
        head: the classifier head (``LinearHead``, ``nn.Linear`` or an adapted model).
        id_val, ood_val: features (N, D) or ``FeatureSet``s of the validation splits (their cached
            logits spare the head matmul where the method allows it).
        grid: ``{param: [values]}``; default the method's ``aps_grid`` (OpenOOD's APS grid).
        params: fixed parameters the grid points are merged into.
        fit_features, fit_labels: what ``fit`` sees (default: the ID-val features, as OpenOOD's
            postprocessors do in their setup).
        criterion: ``"auroc"`` (default), ``"fpr95"`` or a callable, higher = better.

    Returns:
        SearchResult (``best_params``, ``best_auroc``, ``table`` of every grid point).
    """
    if isinstance(method, Detector):
        name, base = method.name, {**method.get_params(), **(params or {})}
    else:
        name, base = str(method), dict(params or {})
    cls = detector_class(name)
    if cls.requires_model:
        raise ValueError(
            f"{name!r} perturbs input images and cannot be searched on features: use "
            "aps_search_inputs(model, id_val_dataset, ood_val_dataset)"
        )
    chosen = resolve_grid(name, grid, base)
    id_h, ood_h = _features(id_val), _features(ood_val)
    id_z, ood_z = _plain_logits(id_val), _plain_logits(ood_val)
    fit_h = id_h if fit_features is None else _features(fit_features)
    if fit_labels is None and fit_features is None:
        fit_labels = getattr(id_val, "labels", None)
    elif fit_labels is None:
        fit_labels = getattr(fit_features, "labels", None)
    labels = fit_labels if cls.requires_labels else None

    def score_point(point: dict[str, Any]) -> ScorePair:
        detector = create_detector(name, **point).fit(head, fit_h, labels)
        return detector.score(id_h, plain_logits=id_z), detector.score(ood_h, plain_logits=ood_z)

    return run_grid(name, chosen, score_point, base, criterion)


def aps_search_inputs(
    model: Any,
    id_val: Any,
    ood_val: Any,
    method: str = "odin",
    *,
    grid: Mapping[str, Iterable[Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    criterion: Criterion = "auroc",
    benchmark: Any = None,
    cache: Any = None,
    batch_size: int = 256,
    device: str = "cpu",
    num_workers: int | None = None,
    progress: bool = False,
) -> SearchResult:
    """APS for an input-perturbation method (ODIN) through the model on the val datasets.

    Every grid point is scored in one pass over each val set
    (``shapeood.features.perturbation.perturbation_scores``: one backward per temperature,
    one forward per point), with results cached like features when ``cache`` is set.
    """
    from shapeood.features.perturbation import perturbation_scores

    base = dict(params or {})
    chosen = resolve_grid(method, grid, base)
    points = [{**base, **p} for p in grid_points(chosen)]
    options = {
        "benchmark": benchmark, "cache": cache, "batch_size": batch_size, "device": device,
        "num_workers": num_workers, "progress": progress,
    }  # fmt: skip
    id_results = perturbation_scores(model, id_val, points, **options)
    ood_results = perturbation_scores(model, ood_val, points, **options)
    by_point = {
        repr(sorted(p.items())): (i.scores, o.scores)
        for p, i, o in zip(points, id_results, ood_results, strict=True)
    }

    def score_point(point: dict[str, Any]) -> ScorePair:
        return by_point[repr(sorted(point.items()))]

    return run_grid(method, chosen, score_point, base, criterion)
