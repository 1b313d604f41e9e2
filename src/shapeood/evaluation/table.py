"""Stage 6, table: OpenOOD's rows per method (``metrics.ood_table``) plus accuracy and sizes."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from shapeood import metrics
from shapeood.detectors import Detector
from shapeood.errors import DegenerateResultWarning
from shapeood.evaluation.plan import Plan
from shapeood.evaluation.score import MethodScores

METRIC_COLUMNS = ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC")
GROUP_ROWS = metrics.GROUP_ROWS


def jsonable(value: Any) -> Any:
    """A JSON-friendly stand-in: arrays become ``"<array (shape)>"``, numpy scalars Python ones."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"<array {tuple(value.shape)}>"
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def fitted_state(detector: Detector) -> dict[str, float]:
    """The scalar learned state (``threshold_``, ``th_``, ...) of a fitted detector."""
    return {
        key: float(value)
        for key, value in vars(detector).items()
        if key.endswith("_") and not key.startswith("_") and isinstance(value, (int, float))
    }


def columns(other: str) -> list[str]:
    """The column order of the result table."""
    return [
        "method", "dataset", *METRIC_COLUMNS, "group", "ACC_shaped", f"FPR@95_{other}",
        "fpr_convention", "params", "fitted", "n_id", "n_ood",
    ]  # fmt: skip


def method_rows(plan: Plan, scores: MethodScores, plain_acc: float) -> list[dict[str, Any]]:
    """One row per OOD set and per group mean for one method (ID = test, then csid sets)."""
    csid = scores.csid if plan.fsood else None
    id_all = torch.cat([torch.as_tensor(scores.id), *map(torch.as_tensor, (csid or {}).values())])
    method = getattr(scores.detector, "name", "")
    for sets in scores.ood.values():
        for set_name, ood in sets.items():  # one warning per set, naming method and set
            metrics.warn_if_degenerate(id_all, ood, f"{method} on {set_name}".strip())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateResultWarning)
        main = metrics.ood_table(
            scores.id, scores.ood, csid, convention=plan.convention, also_fpr_under=(plan.other,)
        )
    n_id = len(scores.id) + sum(len(s) for s in (csid or {}).values())
    sizes = {n: len(s) for sets in scores.ood.values() for n, s in sets.items()}
    groups = {n: g for g, sets in scores.ood.items() for n in sets}
    for group, sets in scores.ood.items():
        if sets:
            sizes[GROUP_ROWS[group]] = sum(len(s) for s in sets.values())
            groups[GROUP_ROWS[group]] = group
    common = {
        "method": scores.detector.name, "ACC": plain_acc, "ACC_shaped": scores.accuracy,
        "fpr_convention": plan.convention, "n_id": n_id,
        "params": json.dumps(
            {k: jsonable(v) for k, v in scores.detector.get_params().items()}, sort_keys=True
        ),
        "fitted": json.dumps(fitted_state(scores.detector), sort_keys=True),
    }  # fmt: skip
    rows = []
    for name in main.index:
        row = {**common, **main.loc[name].to_dict(), "dataset": name, "group": groups[name]}
        rows.append({**row, "n_ood": sizes[name]})
    return rows


def build_table(plan: Plan, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The result DataFrame in the documented column order."""
    return pd.DataFrame(rows, columns=columns(plan.other)).reset_index(drop=True)
