"""One evaluation run: the stages in order (plan, features, search, fit, score, table)."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from shapeood import progress as progress_lines
from shapeood._types import Device, FprConvention
from shapeood.detectors import detector_class
from shapeood.evaluation.aps import search_method
from shapeood.evaluation.features import Features, RunOptions, extract_features
from shapeood.evaluation.fit import fit_detector, fit_source
from shapeood.evaluation.plan import Plan, make_plan
from shapeood.evaluation.result import EvaluationResult, make_result, save_score_file
from shapeood.evaluation.score import (
    MethodScores,
    percent_accuracy,
    score_on_features,
    score_on_inputs,
)
from shapeood.evaluation.table import build_table, jsonable, method_rows
from shapeood.search import Criterion


class _Run:
    """What accumulates while the stages run: rows, scores, grids, timings, notes."""

    def __init__(self, plan: Plan, options: RunOptions) -> None:
        self.plan, self.options = plan, options
        self.rows: list[dict[str, Any]] = []
        self.scores: dict[str, dict[str, np.ndarray]] = {}
        self.grids: dict[str, Any] = {}
        self.choices: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []

    def stage(self, message: str) -> None:
        progress_lines.stage(message, quiet=not self.options.progress)


def _method(run: _Run, features: Features, name: str, plain_acc: float) -> None:
    """Search (APS), fit and score one method; add its rows, scores and grid to ``run``."""
    plan, started = run.plan, time.perf_counter()
    searched = search_method(plan, features, name, run.options)
    params = plan.params[name] if searched is None else searched.best_params
    if searched is not None:
        run.grids[name] = searched.table
        run.choices[name] = {k: jsonable(v) for k, v in params.items()}
    if detector_class(name).requires_model:
        result = score_on_inputs(plan, name, params, run.options)
    else:
        source, note = fit_source(name, params, features)
        run.notes += [note] if note else []
        detector = fit_detector(name, params, plan.model.head, source)
        result = score_on_features(plan, features, detector)
    run.notes += [result.note] if result.note else []
    run.rows += method_rows(plan, result, plain_acc)
    run.scores[name] = _score_arrays(result)
    run.timings[f"{name}_s"] = time.perf_counter() - started


def _score_arrays(result: MethodScores) -> dict[str, np.ndarray]:
    sets = {"id": result.id, **result.csid}
    sets.update({n: s for group in result.ood.values() for n, s in group.items()})
    return {k: v.detach().cpu().numpy() for k, v in sets.items()}


def _attrs(run: _Run, features: Features, plain_acc: float) -> dict[str, Any]:
    plan = run.plan
    model_name = plan.model.pretrained_cfg.get("name", type(plan.model.model).__name__)
    grids = {n: json.loads(t.to_json(orient="records")) for n, t in run.grids.items()}
    return {
        "benchmark": plan.bench.name, "protocol": plan.bench.protocol, "model": str(model_name),
        "fpr_convention": plan.convention, "other_fpr_convention": plan.other,
        "aps": plan.aps, "aps_criterion": _criterion_label(plan.criterion),
        "aps_choices": run.choices, "aps_tables": grids, "mode": _mode(plan),
        "csid_sets": list(plan.csid), "sizes": features.sizes(), "plain_accuracy": plain_acc,
        "timings": run.timings, "notes": run.notes,
    }  # fmt: skip


def _mode(plan: Plan) -> str:
    return "fsood" if plan.fsood else "ood"


def _criterion_label(criterion: Any) -> str:
    return criterion if isinstance(criterion, str) else getattr(criterion, "__name__", "callable")


def _notes_of_plan(plan: Plan) -> list[str]:
    notes = []
    if plan.fsood:
        notes.append(
            "full-spectrum OOD (fsood): ID = ID test + csid sets "
            f"{', '.join(plan.csid)}, ACC pooled over them"
        )
    if plan.max_samples is not None:
        cap = dict(plan.max_samples) if isinstance(plan.max_samples, Mapping) else plan.max_samples
        notes.append(f"datasets capped at max_samples={cap} (evenly spaced rows)")
    return notes


def evaluate_one(
    model: Any,
    benchmark: Any,
    methods: str | Iterable[str] = "all",
    aps: bool = False,
    fpr_convention: FprConvention | None = None,
    device: Device = "cpu",
    batch_size: int = 256,
    cache: Any = True,
    save_scores: str | os.PathLike | None = None,
    progress: bool = True,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    weights: Any = None,
    data_root: Any = None,
    grids: Mapping[str, Mapping[str, Iterable[Any]]] | None = None,
    max_samples: int | Mapping[str, int] | None = None,
    odin_max_samples: int | None = None,
    num_workers: int | None = None,
    amp: bool | str = False,
    criterion: Criterion = "auroc",
    fsood: bool = False,
    return_scores: bool = False,
) -> EvaluationResult | tuple[EvaluationResult, dict[str, dict[str, np.ndarray]]]:
    """Evaluate OOD detectors of ``model`` on ``benchmark`` (OpenOOD v1.5 layout).

    Stages: plan (roles to datasets, parameters from presets and ``params``), features (one
    backbone pass per dataset, cached), then per method: search (APS when ``aps``), fit (on the
    split its traits name), score, table (``shapeood.metrics.ood_table``).

    Args:
        model: ``nn.Module``, FeatureModel (``shapeood.models.adapt``) or a spec string for
            ``shapeood.models.load_model`` (kit name, ``torchvision:NAME``, checkpoint path);
            a list of them (or one spec with a list of ``weights``) evaluates every run and
            returns the aggregated table (``shapeood.evaluation.runs.evaluate_runs``).
        benchmark: a ``Benchmark``, a registered name or a benchmark file.
        methods: ``"all"``, ``"energy,ash_s"`` or a list of registry names.
        aps: search each method's grid (its ``aps_grid`` or ``grids[name]``) on ID-val vs
            OOD-val by ``criterion``: ``"auroc"`` (default), ``"fpr95"`` or a callable
            ``(id_scores, ood_scores) -> float``, higher = better.
        fpr_convention: FPR@95 convention of the main column; default the benchmark's. The
            other convention is reported as the column ``FPR@95_<other>``.
        cache: feature cache (True, a folder, a FeatureCache, or False); ODIN scores too.
        save_scores: write per-sample scores to this ``.npz`` (keys ``"<method>/<set>"``).
        params: ``{method: {param: value}}`` overriding presets (and the base of APS grids).
        grids: ``{method: {param: [values]}}`` replacing APS grids.
        max_samples: cap every dataset at this many evenly spaced rows (an int, or a dict by
            role: ``id_test``, ``id_val``, ``ood_val``, ``id_train``, ``ood``, ``csid``).
        odin_max_samples: a further cap on the images ODIN pushes through the model per set.
        num_workers: DataLoader worker processes that decode images (the CLI's ``--workers``);
            None (default) chooses ``shapeood.features.extraction.default_num_workers`` per
            dataset: ``min(8, cores - 1)`` for image files, 0 for in-memory arrays (and for
            fewer than two batches); 0 decodes in the main process.
        fsood: full-spectrum OOD (OpenOOD's ``eval_ood(fsood=True)``): the benchmark's csid
            sets count as ID (ID scores = ID test then every csid set; ACC pooled).
        return_scores: deprecated (the result carries ``.scores``): also return the scores.

    Returns:
        EvaluationResult: a DataFrame with columns ``method, dataset, FPR@95, AUROC, AUPR_IN,
        AUPR_OUT, ACC, group, ACC_shaped, FPR@95_<other>, fpr_convention, params, fitted, n_id,
        n_ood`` (percent) carrying ``.scores``, ``.grids``, ``.timings``, ``.notes``, ``.mode``.
    """
    started = time.perf_counter()
    plan = make_plan(
        model, benchmark, methods, aps=aps, fsood=fsood, fpr_convention=fpr_convention,
        params=params, grids=grids, criterion=criterion, max_samples=max_samples,
        odin_max_samples=odin_max_samples, weights=weights, data_root=data_root,
    )  # fmt: skip
    options = RunOptions(device, batch_size, num_workers, amp, cache, progress)
    run = _Run(plan, options)
    run.stage(f"evaluate {len(plan.methods)} method(s) on {plan.bench.name} ({_mode(plan)})")
    run.stage(f"features: {len(plan.roles) + len(plan.ood_sets()) + len(plan.csid)} dataset(s)")
    features = extract_features(plan, options)
    run.timings["extraction_s"] = time.perf_counter() - started
    id_sets = [features.roles["id_test"], *features.csid.values()]
    plain_acc = percent_accuracy([f.predictions for f in id_sets], [f.labels for f in id_sets])
    for name in plan.methods:
        grid = plan.grids.get(name) or {}
        points = math.prod(len(list(v)) for v in grid.values()) if grid else 0
        search = f"APS over {points} grid point(s), " if points else ""
        run.stage(f"{name}: {search}fit, score, table")
        _method(run, features, name, plain_acc)
    run.notes = _notes_of_plan(plan) + run.notes
    run.timings["total_s"] = time.perf_counter() - started
    table = build_table(plan, run.rows)
    table.attrs.update(_attrs(run, features, plain_acc))
    result = make_result(
        table, scores=run.scores, grids=run.grids, timings=run.timings, notes=run.notes,
        mode=_mode(plan),
    )  # fmt: skip
    if save_scores is not None:
        save_score_file(save_scores, run.scores)
    if return_scores:
        warnings.warn(
            "evaluate(return_scores=True) is deprecated: the result carries .scores",
            FutureWarning,
            stacklevel=2,
        )
        return result, run.scores
    return result
