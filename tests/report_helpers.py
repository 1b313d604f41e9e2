"""Synthetic evaluate-like results (tables, per-sample scores, APS grids) for report tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from shapeood import metrics

SETS = (("tin", "near"), ("mnist", "far"), ("texture", "far"))
GROUP_ROWS = {"near": "nearood", "far": "farood"}


def make_run(
    methods: list[str], seed: int = 0, n_id: int = 120, n_ood: int = 100, model: str = "toy_net"
) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """A results table computed from random scores (so metrics and scores agree), the scores,
    and APS grids (one parameter for every method but the last, two for the last)."""
    rng = np.random.default_rng(seed)
    rows, scores = [], {}
    aps_tables, aps_choices = {}, {}
    for k, method in enumerate(methods):
        shift = 0.5 + 0.15 * k
        sets = {"id": rng.normal(shift, 1, n_id)}
        for name, group in SETS:
            sets[name] = rng.normal(0 if group == "near" else -0.5, 1, n_ood)
        scores[method] = sets
        per_group: dict[str, list[dict]] = {"near": [], "far": []}
        for name, group in SETS:
            id_s, ood_s = sets["id"], sets[name]
            row = {
                "method": method, "dataset": name,
                "FPR@95": 100 * metrics.fpr_at_95(id_s, ood_s, convention="openood"),
                "AUROC": 100 * metrics.auroc(id_s, ood_s),
                "AUPR_IN": 100 * metrics.aupr_in(id_s, ood_s),
                "AUPR_OUT": 100 * metrics.aupr_out(id_s, ood_s),
                "ACC": 90.0 + seed, "group": group,
                "ACC_shaped": math.nan if k % 2 else 89.0 + seed,
                "FPR@95_classic": 100 * metrics.fpr_at_95(id_s, ood_s, convention="classic"),
                "fpr_convention": "openood", "params": json.dumps({"percentile": 90}),
                "fitted": "{}", "n_id": n_id, "n_ood": n_ood,
            }  # fmt: skip
            per_group[group].append(row)
        for group, members in per_group.items():
            rows.extend(members)
            mean = dict(members[0], dataset=GROUP_ROWS[group], n_ood=n_ood * len(members))
            for column in ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "FPR@95_classic"):
                mean[column] = float(np.mean([m[column] for m in members]))
            rows.append(mean)
        if k == len(methods) - 1:
            grid = [
                {"p": p, "t": t, "auroc": 0.7 + 0.01 * p / 10 + 0.02 * t, "fpr95": 0.5}
                for p in (10, 20, 30) for t in (1.0, 1.5)
            ]  # fmt: skip
        else:
            grid = [{"percentile": p, "auroc": 0.8 - abs(p - 80 - k) / 100, "fpr95": 0.5}
                    for p in (70, 80, 90, 95)]  # fmt: skip
        best = max(range(len(grid)), key=lambda i: grid[i]["auroc"])
        for i, record in enumerate(grid):
            record["best"] = i == best
        aps_tables[method] = grid
        aps_choices[method] = {k2: v for k2, v in grid[best].items() if k2 not in
                               ("auroc", "fpr95", "best")}  # fmt: skip
    df = pd.DataFrame(rows)
    df.attrs.update(
        benchmark="toy_bench", protocol="openood", model=model, fpr_convention="openood",
        other_fpr_convention="classic", aps=True, aps_choices=aps_choices,
        aps_tables=aps_tables, plain_accuracy=90.0 + seed,
        sizes={"id_test": n_id, **{name: n_ood for name, _ in SETS}}, notes=["a note"],
    )  # fmt: skip
    return df, scores
