"""Several checkpoints, one table: ``evaluate`` every run, then aggregate (mean ± std).

``evaluate([model_a, model_b, model_c], benchmark)`` (or one model spec with several
``weights``) lands here: each run is evaluated as usual, its table kept, and the cells are
aggregated by ``shapeood.aggregation.aggregate`` (per-cell mean and population std, ddof=0,
as OpenOOD reports CIFAR results over three training runs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shapeood import progress as progress_lines
from shapeood.evaluation.result import EvaluationResult, make_result, save_score_file

__all__ = ["evaluate_runs", "run_pairs"]


def run_pairs(models: Any, weights: Any = None) -> list[tuple[Any, Any]]:
    """``(model, weights)`` per run: several models (each with the same ``weights``, or one
    weights entry each), or one model spec with several weights files."""
    model_list = list(models) if isinstance(models, (list, tuple)) else [models]
    if weights is None or not isinstance(weights, (list, tuple)):
        return [(m, weights) for m in model_list]
    weight_list = list(weights)
    if len(model_list) == 1:
        return [(model_list[0], w) for w in weight_list]
    if len(weight_list) != len(model_list):
        raise ValueError(
            f"got {len(model_list)} models and {len(weight_list)} weights: give one weights "
            "entry per model, or one model with several weights (--model M --weights A "
            "--weights B ...)"
        )
    return list(zip(model_list, weight_list, strict=True))


def run_label(model: Any, weights: Any) -> str:
    """A short name for a run: the weights' folder (``.../seed1/model.pt`` -> ``seed1``) or
    file stem, else the model spec."""
    if weights is not None:
        path = Path(str(weights))
        return path.parent.name if path.name in ("model.pt", "checkpoint.pt") else path.stem
    if isinstance(model, (str, os.PathLike)):
        text = str(model)
        return Path(text).stem if os.sep in text else text
    return type(getattr(model, "model", model)).__name__


def evaluate_runs(
    models: Any,
    benchmark: Any,
    *,
    weights: Any = None,
    labels: Any = None,
    save_scores: Any = None,
    **options: Any,
) -> EvaluationResult:
    """Evaluate every ``(model, weights)`` run with ``options`` (those of ``evaluate``), then
    aggregate.

    Returns:
        The aggregated table (``<metric>`` = mean, ``<metric>_std`` = population std over runs)
        as an ``EvaluationResult`` whose ``scores`` are the first run's (for plots);
        ``attrs["run_tables"]`` keeps every run's table, ``attrs["run_scores"]`` their scores
        and ``attrs["runs"]`` each run's model, weights, APS choices and grids.
        ``save_scores`` (a folder) receives ``<label>.npz`` per run.
    """
    from shapeood.aggregation import aggregate, run_labels
    from shapeood.evaluation.run import evaluate_one as evaluate

    if options.pop("return_scores", False):
        raise ValueError("return_scores does not apply to several runs: read .attrs['run_scores']")
    pairs = run_pairs(models, weights)
    tables = []
    for i, (model, weight) in enumerate(pairs):
        result = evaluate(model, benchmark, weights=weight, **options)
        result.attrs["label"] = run_label(model, weight)
        result.attrs["weights"] = None if weight is None else str(weight)
        tables.append(result)
        if options.get("progress", True):
            progress_lines.stage(f"run {i + 1}/{len(pairs)} done: {result.attrs['label']}")
    names = run_labels(tables, labels)
    if save_scores is not None:
        for name, table in zip(names, tables, strict=True):
            save_score_file(Path(save_scores) / f"{name}.npz", table.scores)
    combined = aggregate(tables, labels=names)
    combined.attrs["run_tables"] = [t.table for t in tables]
    combined.attrs["run_scores"] = [t.scores for t in tables]
    first = tables[0]
    return make_result(
        combined, scores=first.scores, grids={}, timings={"runs": [t.timings for t in tables]},
        notes=list(combined.attrs.get("notes", [])), mode=first.mode,
    )  # fmt: skip
