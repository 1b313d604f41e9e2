"""APS: OpenOOD's automatic hyperparameter search, on cached features.

For every point of a method's grid (``Detector.default_sweep`` or a user grid) the detector is
fitted and scored on ID-val and OOD-val; the point with the highest AUROC(ID-val, OOD-val) wins.
Grid points are visited in ``itertools.product`` order of the grid's keys and values as given;
a later point must be strictly better to replace the current best, so **ties go to the first
grid point**. Feature-space methods run on cached features (no network pass); ODIN perturbs
inputs and is searched through the model with ``aps_search_inputs``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from shapeood import metrics
from shapeood.detectors import Detector, create_detector, detector_class

ScorePair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class SearchResult:
    """Outcome of an APS search.

    ``best_params``: the winning grid point merged into the base parameters; ``best_auroc``:
    its validation AUROC in [0, 1]; ``table``: one row per grid point (parameters, ``auroc``,
    ``fpr95`` under the OpenOOD convention, ``best`` flag) in visiting order.
    """

    method: str
    best_params: dict[str, Any]
    best_auroc: float
    table: pd.DataFrame = field(repr=False)


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


def resolve_grid(name: str, grid: Mapping[str, Iterable[Any]] | None) -> dict[str, list]:
    """The user grid when given, else the method's ``default_sweep``; unknown keys raise."""
    cls = detector_class(name)
    chosen = dict(cls.default_sweep) if grid is None else {k: list(v) for k, v in grid.items()}
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
) -> SearchResult:
    """Score every grid point with ``score_point(params) -> (id_scores, ood_scores)``."""
    base = dict(base_params or {})
    rows = []
    best_index, best_auroc = -1, float("-inf")
    for index, point in enumerate(grid_points(grid)):
        params = {**base, **point}
        id_scores, ood_scores = score_point(params)
        auroc = metrics.auroc(id_scores, ood_scores)
        fpr = metrics.fpr_at_95(id_scores, ood_scores, convention="openood")
        rows.append({**point, "auroc": auroc, "fpr95": fpr})
        if auroc > best_auroc:  # strict: ties keep the first grid point
            best_index, best_auroc = index, auroc
    table = pd.DataFrame(rows)
    table["best"] = [i == best_index for i in range(len(rows))]
    best_params = {**base, **grid_points(grid)[best_index]}
    return SearchResult(name, best_params, float(best_auroc), table)


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
) -> SearchResult:
    """Pick the hyperparameters of ``method`` that maximise AUROC(ID-val, OOD-val).

    Args:
        method: a registry name or a Detector (its parameters become the base parameters).
        head: the classifier head (``LinearHead``, ``nn.Linear`` or an adapted model).
        id_val, ood_val: features (N, D) or ``FeatureSet``s of the validation splits (their cached
            logits spare the head matmul where the method allows it).
        grid: ``{param: [values]}``; default the method's ``default_sweep`` (OpenOOD's APS grid).
        params: fixed parameters the grid points are merged into.
        fit_features, fit_labels: what ``fit`` sees (default: the ID-val features, as OpenOOD's
            postprocessors do in their setup).

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
    chosen = resolve_grid(name, grid)
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

    return run_grid(name, chosen, score_point, base)


def aps_search_inputs(
    model: Any,
    id_val: Any,
    ood_val: Any,
    method: str = "odin",
    *,
    grid: Mapping[str, Iterable[Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    score_dataset: Callable[[Detector, Any], torch.Tensor] | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
) -> SearchResult:
    """APS for an input-perturbation method (ODIN) through the model on the val datasets.

    ``score_dataset(detector, dataset) -> scores`` may replace the default batch loop (the
    evaluator passes its cached one). Costs one forward + backward + forward per image and
    grid point.
    """
    chosen = resolve_grid(method, grid)
    if score_dataset is None:
        from shapeood.evaluation import score_inputs

        def score_dataset(detector: Detector, dataset: Any) -> torch.Tensor:
            return score_inputs(
                detector, model, dataset, batch_size=batch_size, device=device, progress=progress
            )[0]

    def score_point(point: dict[str, Any]) -> ScorePair:
        detector = create_detector(method, **point)
        return score_dataset(detector, id_val), score_dataset(detector, ood_val)

    return run_grid(method, chosen, score_point, params)
