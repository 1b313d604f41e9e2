"""``evaluate``: run OOD detectors on a benchmark, OpenOOD style, with features extracted once.

The backbone runs once per dataset (``shapeood.features.extract``, cached on disk); every
feature-space method and every grid point of its APS search then runs on the cached pooled
features. ODIN is the exception: it perturbs input images, so it runs through the model (one
forward, one backward and one more forward per image, i.e. about 3-4x the cost of extraction,
times the number of grid points under APS); its scores are cached too.

What each method is fitted on (``fit(head, features, labels)``):

* DICE (mean feature) and HIMPLoS (class prototypes by true label): ID **train** features when
  the benchmark has ``id_train``, else ID val.
* ReAct (threshold = p-th percentile of all ID activations) and LHAct (fitted ``th``/``tl``
  percentiles): ID **val**, as OpenOOD's postprocessor setup does, else ID train.
* Without either split the ID test set is used, with a warning (that leaks test data).

Parameters are the detector defaults, then the method's preset for the benchmark family
(``"cifar"`` or ``"imagenet"``, e.g. ASH@95 and HIMPLoS (60, 1.6) on CIFAR), then ``params``.
LHAct's published ``th``/``tl`` are ImageNet ResNet-50 values; outside ImageNet the evaluator
fits them as percentiles of ID activations (``th_percentile=95``, ``tl_percentile=35``; APS grid
{90, 95, 99} x {15, 35, 55}). This is the evaluator's choice, not an upstream setting.

Output: a DataFrame with a row per (method, OOD set) and the near/far means (unweighted mean
over the sets of a group, rows ``nearood``/``farood``), metrics in percent as OpenOOD prints them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from shapeood import metrics, paths
from shapeood.detectors import Detector, create_detector, detector_class, list_detectors

METRIC_COLUMNS = ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC")
GROUP_ROWS = {"near": "nearood", "far": "farood"}

__all__ = [
    "METRIC_COLUMNS",
    "evaluate",
    "method_params",
    "resolve_benchmark",
    "resolve_methods",
    "resolve_model",
    "score_inputs",
]


# ----------------------------------------------------------------------------- inputs


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


def _fits_on_features(name: str, params: Mapping[str, Any]) -> bool:
    """Whether ``fit`` learns from ID features under ``params`` (``needs_fit``)."""
    return detector_class(name).needs_fit(params)


# ----------------------------------------------------------------------------- datasets


def _prepare_dataset(dataset: Any, transform: Any, limit: int | None) -> Any:
    from shapeood.features.extraction import TransformedDataset
    from shapeood.features.keys import dataset_transform

    if limit is not None and len(dataset) > limit:
        rows = np.unique(np.linspace(0, len(dataset) - 1, int(limit)).round().astype(np.int64))
        dataset = Subset(dataset, rows.tolist())
    if dataset_transform(dataset) is None:
        dataset = TransformedDataset(dataset, transform)
    return dataset


def _limit_for(max_samples: Any, role: str) -> int | None:
    if max_samples is None:
        return None
    if isinstance(max_samples, Mapping):
        value = max_samples.get(role, max_samples.get("ood" if role in ("near", "far") else role))
        return None if value is None else int(value)
    return int(max_samples)


# ----------------------------------------------------------------------------- ODIN


def score_inputs(
    detector: Detector,
    model: Any,
    dataset: Any,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
    cache: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores, preds, labels)`` of an input-perturbation detector over ``dataset``.

    ``dataset`` yields normalised float images. With ``cache`` (True or a folder) the result
    is stored under ``odin_scores/`` keyed by the model, the dataset and the parameters.
    """
    path = _input_score_path(cache, model, dataset, detector)
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return (
                torch.from_numpy(stored["scores"]),
                torch.from_numpy(stored["preds"]),
                torch.from_numpy(stored["labels"]),
            )
    network = getattr(model, "model", model)
    was_training = network.training
    network.eval().to(device)
    loader = DataLoader(dataset, batch_size=int(batch_size), shuffle=False)
    scores, preds, labels = [], [], []
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(dataset),
        unit="img",
        desc=f"{detector.name} {getattr(dataset, 'name', '')}".strip(),
        disable=not progress,
        leave=False,
    )
    try:
        for images, y in loader:
            s, p = detector.score_and_predict_inputs(model, images.to(device))
            scores.append(s.detach().cpu().to(torch.float32))
            preds.append(p.detach().cpu())
            labels.append(torch.as_tensor(y).reshape(-1).to(torch.int64))
            bar.update(len(images))
    finally:
        bar.close()
        network.train(was_training)
    result = (torch.cat(scores), torch.cat(preds), torch.cat(labels))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.npz")
        np.savez(
            partial, scores=result[0].numpy(), preds=result[1].numpy(), labels=result[2].numpy()
        )
        os.replace(partial, path)
    return result


def _cache_folder(cache: Any) -> Path | None:
    if cache is None or cache is False:
        return None
    if cache is True:
        return paths.cache_root()
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache).expanduser()
    root = getattr(cache, "root", None)
    return Path(root) if root is not None else None


def _input_score_path(cache: Any, model: Any, dataset: Any, detector: Detector) -> Path | None:
    folder = _cache_folder(cache)
    if folder is None:
        return None
    from shapeood.features import describe

    key = describe(model, dataset)["key"]
    if key is None:
        return None
    params = json.dumps({"key": key, "params": detector.get_params()}, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{detector.name}|{params}".encode()).hexdigest()[:32]
    return folder / "odin_scores" / f"{detector.name}-{digest}.npz"


# ----------------------------------------------------------------------------- metrics


def _other_convention(convention: str) -> str:
    return "classic" if convention == "openood" else "openood"


def _set_metrics(
    id_scores: torch.Tensor, ood_scores: torch.Tensor, convention: str, other: str
) -> dict[str, float]:
    return {
        "FPR@95": 100 * metrics.fpr_at_95(id_scores, ood_scores, convention=convention),
        "AUROC": 100 * metrics.auroc(id_scores, ood_scores),
        "AUPR_IN": 100 * metrics.aupr_in(id_scores, ood_scores),
        "AUPR_OUT": 100 * metrics.aupr_out(id_scores, ood_scores),
        f"FPR@95_{other}": 100 * metrics.fpr_at_95(id_scores, ood_scores, convention=other),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"<array {tuple(value.shape)}>"
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _fitted_state(detector: Detector) -> dict[str, float]:
    state = {}
    for key, value in vars(detector).items():
        if key.endswith("_") and not key.startswith("_") and isinstance(value, (int, float)):
            state[key] = float(value)
    return state


def _accuracy(preds: torch.Tensor, labels: torch.Tensor) -> float:
    known = labels >= 0
    if not bool(known.any()):
        return math.nan
    return 100 * float((preds[known] == labels[known]).double().mean())


# ----------------------------------------------------------------------------- evaluate


def evaluate(
    model: Any,
    benchmark: Any,
    methods: str | Iterable[str] = "all",
    aps: bool = False,
    fpr_convention: str | None = None,
    device: str = "cpu",
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
    num_workers: int = 0,
    amp: bool | str = False,
    return_scores: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Evaluate OOD detectors of ``model`` on ``benchmark`` (OpenOOD v1.5 layout).

    Args:
        model: ``nn.Module``, FeatureModel (``shapeood.models.adapt``) or a spec string for
            ``shapeood.models.load_model`` (kit name, ``torchvision:NAME``, checkpoint path).
        benchmark: a ``Benchmark``, a built-in name (``shapeood.data.list_benchmarks()``) or a
            benchmark file.
        methods: ``"all"``, ``"energy,ash_s"`` or a list of registry names.
        aps: search each method's grid (``default_sweep`` or ``grids[name]``) by AUROC of ID-val
            vs OOD-val (``shapeood.search``); else the defaults/presets/``params`` are used.
        fpr_convention: FPR@95 convention of the main column; default the benchmark's. The
            other convention is reported as the column ``FPR@95_<other>``.
        cache: feature cache (True, a folder, a FeatureCache, or False); ODIN scores are
            cached beside it.
        save_scores: write per-sample scores to this ``.npz`` (keys ``"<method>/id"``,
            ``"<method>/<ood set>"``).
        params: ``{method: {param: value}}`` overriding presets (and the base of APS grids).
        grids: ``{method: {param: [values]}}`` replacing APS grids.
        max_samples: cap every dataset at this many evenly spaced rows (an int, or a dict by
            role: ``id_test``, ``id_val``, ``ood_val``, ``id_train``, ``ood``).
        odin_max_samples: a further cap on the images ODIN pushes through the model per set.
        return_scores: also return ``{method: {"id": scores, set: scores}}``.

    Returns:
        DataFrame with columns ``method, dataset, FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC, group,
        ACC_shaped, FPR@95_<other>, fpr_convention, params, fitted, n_id, n_ood`` (percent);
        ``ACC`` is the plain network's ID accuracy, ``ACC_shaped`` that of the method's own
        predictions (only for methods that change logits, and ODIN). ``df.attrs`` holds the
        convention, the APS choices and grid tables, dataset sizes, timings and notes.
    """
    started = time.perf_counter()
    fm = resolve_model(model, weights)
    bench = resolve_benchmark(benchmark, data_root)
    names = resolve_methods(methods)
    convention = fpr_convention or bench.fpr_convention
    if convention not in metrics.CONVENTIONS:
        raise ValueError(
            f"unknown fpr_convention {convention!r}: use one of {', '.join(metrics.CONVENTIONS)}"
        )
    other = _other_convention(convention)
    family = bench.family
    params = {detector_class(k).name: dict(v) for k, v in (params or {}).items()}
    grids = {detector_class(k).name: v for k, v in (grids or {}).items()}
    unused = sorted(set(params) - set(names))
    if unused:
        raise ValueError(f"params given for {unused}, which are not among the methods {names}")

    from shapeood.features import extract
    from shapeood.models import transform_for

    transform = transform_for(fm.pretrained_cfg, resize=bench.resize, crop=bench.crop)
    feature_names = [n for n in names if not detector_class(n).requires_model]
    notes: list[str] = []
    needs_val = aps or any(
        _fits_on_features(n, method_params(n, family, params.get(n))) for n in names
    )
    if aps and (bench.id_val is None or bench.ood_val is None):
        raise ValueError(
            f"benchmark {bench.name!r} has no ID-val/OOD-val split, which APS needs: run with "
            "aps=False (defaults and params) or add id_val/ood_val to the benchmark"
        )
    wants_train = bench.id_train is not None and any(
        detector_class(n).fit_split == "train" for n in feature_names
    )

    datasets: dict[str, Any] = {
        "id_test": _prepare_dataset(bench.id_test, transform, _limit_for(max_samples, "id_test"))
    }
    if bench.id_val is not None and needs_val:
        datasets["id_val"] = _prepare_dataset(
            bench.id_val, transform, _limit_for(max_samples, "id_val")
        )
    if aps:
        datasets["ood_val"] = _prepare_dataset(
            bench.ood_val, transform, _limit_for(max_samples, "ood_val")
        )
    if wants_train:
        datasets["id_train"] = _prepare_dataset(
            bench.id_train, transform, _limit_for(max_samples, "id_train")
        )
    ood_sets: dict[str, tuple[str, Any]] = {}
    for group in ("near", "far"):
        for set_name, dataset in bench.ood.get(group, {}).items():
            ood_sets[set_name] = (group, _prepare_dataset(
                dataset, transform, _limit_for(max_samples, group)))  # fmt: skip

    # ---- features: one backbone pass per dataset (cached)
    t0 = time.perf_counter()
    features: dict[str, Any] = {}
    jobs = list(datasets.items()) + [(n, d) for n, (_, d) in ood_sets.items()]
    if not feature_names:  # ID test features still give the plain network's accuracy
        jobs = [("id_test", datasets["id_test"])]
    for role, dataset in jobs:
        features[role] = extract(
            fm, dataset, batch_size=batch_size, device=device, amp=amp,
            num_workers=num_workers, cache=cache, progress=progress,
        )  # fmt: skip
    extraction_s = time.perf_counter() - t0
    id_test = features["id_test"]
    plain_acc = _accuracy(id_test.predictions, id_test.labels)
    head = fm.head

    def fit_set(name: str) -> Any:
        train_first = detector_class(name).fit_split == "train"
        order = ("id_train", "id_val") if train_first else ("id_val", "id_train")
        for role in order:
            if role in features:
                return features[role]
        if _fits_on_features(name, method_params(name, family, params.get(name))):
            warnings.warn(
                f"{name} is fitted on the ID test set: the benchmark has no id_val/id_train",
                stacklevel=3,
            )
            notes.append(f"{name}: fitted on ID test (no id_val/id_train)")
        return id_test

    rows: list[dict[str, Any]] = []
    all_scores: dict[str, dict[str, np.ndarray]] = {}
    aps_choices: dict[str, dict[str, Any]] = {}
    aps_tables: dict[str, list[dict[str, Any]]] = {}
    timings: dict[str, float] = {"extraction_s": extraction_s}

    from tqdm.auto import tqdm

    for name in tqdm(names, desc="methods", unit="method", disable=not progress, leave=False):
        t_method = time.perf_counter()
        base = method_params(name, family, params.get(name))
        grid = method_grid(name, base, grids.get(name))
        cls = detector_class(name)
        if cls.requires_model:
            detector, id_s, id_pred, id_labels, ood_scores, ood_sizes = _run_input_method(
                name, fm, datasets, bench, transform, ood_sets, base, grid, aps, cache,
                batch_size, device, progress, odin_max_samples, max_samples,
                aps_choices, aps_tables,
            )  # fmt: skip
            notes.append(
                f"{name}: through the model on {len(id_s)} ID test images and "
                + ", ".join(f"{k}={v}" for k, v in ood_sizes.items())
            )
            shaped_acc = _accuracy(id_pred, id_labels)
        else:
            fit_fs = fit_set(name)
            chosen = base
            labels = fit_fs.labels if cls.requires_labels else None
            if aps and grid:
                from shapeood.search import aps_search

                result = aps_search(
                    name, head, features["id_val"], features["ood_val"], grid=grid,
                    params=base, fit_features=fit_fs.features, fit_labels=labels,
                )  # fmt: skip
                chosen = result.best_params
                aps_choices[name] = {k: _jsonable(v) for k, v in chosen.items()}
                aps_tables[name] = json.loads(result.table.to_json(orient="records"))
            detector = create_detector(name, **chosen).fit(head, fit_fs.features, labels)
            id_s, id_pred = detector.score_and_predict(
                id_test.features, plain_logits=id_test.logits
            )
            ood_scores = {
                s: detector.score(features[s].features, plain_logits=features[s].logits)
                for s in ood_sets
            }
            ood_sizes = {s: len(features[s]) for s in ood_sets}
            shaped_acc = _accuracy(id_pred, id_test.labels) if cls.changes_logits else math.nan
        all_scores[name] = {"id": id_s.detach().cpu().numpy()}
        param_text = json.dumps(
            {k: _jsonable(v) for k, v in detector.get_params().items()}, sort_keys=True
        )
        fitted_text = json.dumps(_fitted_state(detector), sort_keys=True)
        group_rows: dict[str, list[dict[str, Any]]] = {"near": [], "far": []}
        for set_name, (group, _) in ood_sets.items():
            scores = ood_scores[set_name]
            all_scores[name][set_name] = scores.detach().cpu().numpy()
            row = {
                "method": name,
                "dataset": set_name,
                "group": group,
                **_set_metrics(id_s, scores, convention, other),
                "ACC": plain_acc,
                "ACC_shaped": shaped_acc,
                "n_id": len(id_s),
                "n_ood": int(ood_sizes[set_name]),
            }
            group_rows[group].append(row)
        for group in ("near", "far"):
            members = group_rows[group]
            if not members:
                continue
            rows.extend(members)
            mean = {
                "method": name,
                "dataset": GROUP_ROWS[group],
                "group": group,
                "ACC": plain_acc,
                "ACC_shaped": shaped_acc,
                "n_id": len(id_s),
                "n_ood": sum(r["n_ood"] for r in members),
            }
            for column in ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", f"FPR@95_{other}"):
                mean[column] = float(np.mean([r[column] for r in members]))
            rows.append(mean)
        for row in rows:
            if row["method"] == name:
                row["params"] = param_text
                row["fitted"] = fitted_text
        timings[f"{name}_s"] = time.perf_counter() - t_method

    columns = [
        "method", "dataset", *METRIC_COLUMNS, "group", "ACC_shaped", f"FPR@95_{other}",
        "fpr_convention", "params", "fitted", "n_id", "n_ood",
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    df["fpr_convention"] = convention
    df = df[columns].reset_index(drop=True)
    timings["total_s"] = time.perf_counter() - started
    if max_samples is not None:
        cap = dict(max_samples) if isinstance(max_samples, Mapping) else max_samples
        notes.append(f"datasets capped at max_samples={cap} (evenly spaced rows)")
    df.attrs.update(
        {
            "benchmark": bench.name,
            "protocol": bench.protocol,
            "model": str(getattr(fm, "pretrained_cfg", {}).get("name", type(fm.model).__name__)),
            "fpr_convention": convention,
            "other_fpr_convention": other,
            "aps": bool(aps),
            "aps_choices": aps_choices,
            "aps_tables": aps_tables,
            "sizes": {role: len(fs) for role, fs in features.items()},
            "plain_accuracy": plain_acc,
            "timings": timings,
            "notes": notes,
        }
    )
    if save_scores is not None:
        save_score_file(save_scores, all_scores)
    if return_scores:
        return df, all_scores
    return df


def save_score_file(path: str | os.PathLike, scores: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``{method: {set: scores}}`` as one ``.npz`` with keys ``"<method>/<set>"``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{m}/{s}": np.asarray(a) for m, sets in scores.items() for s, a in sets.items()}
    np.savez(path, **flat)
    return path


def load_score_file(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Read a score file written by ``save_score_file`` back to ``{method: {set: scores}}``."""
    result: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as stored:
        for key in stored.files:
            method, _, set_name = key.partition("/")
            result.setdefault(method, {})[set_name] = stored[key]
    return result


def _run_input_method(
    name: str,
    fm: Any,
    datasets: dict[str, Any],
    bench: Any,
    transform: Any,
    ood_sets: dict[str, tuple[str, Any]],
    base: dict[str, Any],
    grid: dict[str, list],
    aps: bool,
    cache: Any,
    batch_size: int,
    device: str,
    progress: bool,
    odin_max_samples: int | None,
    max_samples: Any,
    aps_choices: dict[str, Any],
    aps_tables: dict[str, Any],
) -> tuple[Detector, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict]:
    """ODIN-like methods: APS on the val sets and scoring through the model."""

    def capped(dataset: Any) -> Any:
        return _prepare_dataset(dataset, transform, odin_max_samples)

    def run(detector: Detector, dataset: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return score_inputs(
            detector, fm, dataset, batch_size=batch_size, device=device, progress=progress,
            cache=cache,
        )  # fmt: skip

    chosen = dict(base)
    if aps and grid:
        from shapeood.search import aps_search_inputs

        result = aps_search_inputs(
            fm, capped(datasets["id_val"]), capped(datasets["ood_val"]), method=name, grid=grid,
            params=base, score_dataset=lambda det, ds: run(det, ds)[0],
        )  # fmt: skip
        chosen = result.best_params
        aps_choices[name] = {k: _jsonable(v) for k, v in chosen.items()}
        aps_tables[name] = json.loads(result.table.to_json(orient="records"))
    detector = create_detector(name, **chosen)
    id_s, id_pred, id_labels = run(detector, capped(datasets["id_test"]))
    ood_scores, sizes = {}, {}
    for set_name, (_, dataset) in ood_sets.items():
        ood_scores[set_name] = run(detector, capped(dataset))[0]
        sizes[set_name] = len(ood_scores[set_name])
    return detector, id_s, id_pred, id_labels, ood_scores, sizes
