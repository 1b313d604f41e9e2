"""Several runs, one table: mean and population standard deviation per cell.

A pure table function (numpy and pandas only), so that both the evaluator (``evaluate`` over a
list of models) and the report (``shapeood.report.aggregate``, the public name) use it.

OpenOOD's ``scripts/eval_ood.py`` reports CIFAR results over three training runs as
``mean ± std`` per cell; ``aggregate`` does the same for the DataFrames of ``shapeood.evaluate``:

    mean_c = (1 / R) * sum_r x_{r,c}          std_c = sqrt((1 / R) * sum_r (x_{r,c} - mean_c)^2)

(``ddof = 0``, as ``np.std``), over the ``R`` runs, for every metric cell ``c`` (a row identified
by ``(method, dataset)`` and a numeric metric column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

KEY_COLUMNS = ("method", "dataset")
COUNT_COLUMNS = ("n_id", "n_ood")
STD_SUFFIX = "_std"

__all__ = ["STD_SUFFIX", "aggregate", "is_aggregated", "metric_columns", "run_labels"]


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric metric columns of an ``evaluate`` table (sample counts and ``*_std`` excluded)."""
    return [
        c
        for c in df.columns
        if c not in KEY_COLUMNS
        and c not in COUNT_COLUMNS
        and not str(c).endswith(STD_SUFFIX)
        and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
    ]


def is_aggregated(df: pd.DataFrame) -> bool:
    """Whether ``df`` came from ``aggregate`` (it has ``<metric>_std`` columns)."""
    return bool(df.attrs.get("aggregated")) or any(str(c).endswith(STD_SUFFIX) for c in df.columns)


def run_labels(tables: Sequence[pd.DataFrame], labels: Sequence[str] | None = None) -> list[str]:
    """One distinct label per run: ``labels``, else ``attrs["label"]`` or the model name
    (``#2``, ``#3`` appended where two runs share a name)."""
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(tables):
            raise ValueError(f"got {len(labels)} labels for {len(tables)} tables")
        if len(set(labels)) != len(labels):
            raise ValueError(f"run labels must be distinct, got {labels}")
        return labels
    names = [str(t.attrs.get("label") or t.attrs.get("model") or "run") for t in tables]
    out = []
    for i, name in enumerate(names):
        if names.count(name) > 1:
            name = f"{name}#{names[: i + 1].count(name)}"
        out.append(name)
    return out


def _check(tables: Sequence[Any]) -> list[pd.DataFrame]:
    frames = list(tables)
    if not frames:
        raise ValueError("aggregate needs at least one results table")
    for i, frame in enumerate(frames):
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(
                f"tables[{i}] is a {type(frame).__name__}: give the DataFrames of shapeood.evaluate"
            )
        missing = [c for c in KEY_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"tables[{i}] lacks the column(s) {missing} of an evaluate table")
        if frame.duplicated(list(KEY_COLUMNS)).any():
            raise ValueError(f"tables[{i}] has repeated (method, dataset) rows")
        if is_aggregated(frame):
            raise ValueError(f"tables[{i}] is already aggregated: pass the per-run tables")
    conventions = {str(f.attrs.get("fpr_convention", "")) for f in frames} - {""}
    if len(conventions) > 1:
        raise ValueError(
            f"the runs use different FPR@95 conventions {sorted(conventions)}: evaluate them "
            "with the same fpr_convention"
        )
    return frames


def _aligned(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    first = frames[0]
    keys = list(map(tuple, first[list(KEY_COLUMNS)].to_numpy()))
    aligned = [first.reset_index(drop=True)]
    for i, frame in enumerate(frames[1:], start=1):
        other = list(map(tuple, frame[list(KEY_COLUMNS)].to_numpy()))
        missing, extra = set(keys) - set(other), set(other) - set(keys)
        if missing or extra:
            raise ValueError(
                f"tables[{i}] has other (method, dataset) rows than tables[0]: missing "
                f"{sorted(missing)[:4]}, extra {sorted(extra)[:4]}; evaluate every run with the "
                "same methods and benchmark"
            )
        if list(frame.columns) != list(first.columns):
            raise ValueError(f"tables[{i}] has other columns than tables[0]")
        indexed = frame.set_index(list(KEY_COLUMNS))
        aligned.append(indexed.loc[keys].reset_index())
    return aligned


def _common(values: list[Any]) -> Any:
    """The shared value of a non-metric cell, else the distinct values joined by ``" | "``."""
    distinct = []
    for v in values:
        if v not in distinct:
            distinct.append(v)
    return distinct[0] if len(distinct) == 1 else " | ".join(str(v) for v in distinct)


def aggregate(tables: Sequence[pd.DataFrame], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and population std (ddof=0) per cell over the runs' ``evaluate`` tables.

    Args:
        tables: one DataFrame per run (same methods and benchmark; rows are matched by
            ``(method, dataset)``, in the first table's order).
        labels: run names (default from each table's ``attrs``: ``label`` or ``model``).

    Returns:
        A DataFrame with the same rows and columns, metric columns holding the mean over runs,
        plus ``<metric>_std`` columns holding the population standard deviation. Columns that
        are not metrics keep the shared value (distinct values joined by ``" | "``, e.g. APS
        parameters that differ by run). ``attrs`` holds ``aggregated=True``, ``n_runs``,
        ``run_labels``, per-run ``runs`` (model, APS choices and grids, accuracy, sizes) and
        the first run's benchmark metadata; ``plain_accuracy`` / ``plain_accuracy_std``.
    """
    frames = _aligned(_check(tables))
    names = run_labels(frames, labels)
    first = frames[0]
    metrics = metric_columns(first)
    stacked = np.stack([f[metrics].to_numpy(dtype=np.float64) for f in frames])
    with np.errstate(invalid="ignore"):
        mean = stacked.mean(axis=0)
        std = stacked.std(axis=0, ddof=0)
    out = first.copy()
    out.attrs = {}
    for j, column in enumerate(metrics):
        out[column] = mean[:, j]
    for column in out.columns:
        if column in metrics or column in KEY_COLUMNS:
            continue
        values = [f[column].tolist() for f in frames]
        shared = [_common([v[i] for v in values]) for i in range(len(out))]
        out[column] = pd.Series(shared, index=out.index)
    for j, column in enumerate(metrics):
        out[column + STD_SUFFIX] = std[:, j]

    accuracy = [f.attrs.get("plain_accuracy") for f in tables]
    accuracy = [float(a) for a in accuracy if a is not None]
    runs = []
    for name, frame in zip(names, tables, strict=True):
        a = frame.attrs
        runs.append(
            {
                "label": name,
                "model": a.get("model"),
                "weights": a.get("weights"),
                "plain_accuracy": a.get("plain_accuracy"),
                "aps_choices": a.get("aps_choices", {}),
                "aps_tables": a.get("aps_tables", {}),
                "sizes": a.get("sizes", {}),
            }
        )
    base = dict(tables[0].attrs)
    out.attrs.update(
        {
            key: base[key]
            for key in (
                "benchmark",
                "protocol",
                "fpr_convention",
                "other_fpr_convention",
                "aps",
                "aps_criterion",
                "mode",
            )
            if key in base
        }
    )
    models = []
    for run in runs:
        if run["model"] not in models:
            models.append(run["model"])
    out.attrs.update(
        {
            "aggregated": True,
            "n_runs": len(frames),
            "run_labels": names,
            "model": ", ".join(str(m) for m in models),
            "runs": runs,
            "sizes": base.get("sizes", {}),
            "notes": list(base.get("notes", [])),
        }
    )
    if accuracy:
        out.attrs["plain_accuracy"] = float(np.mean(accuracy))
        out.attrs["plain_accuracy_std"] = float(np.std(accuracy, ddof=0))
    return out
