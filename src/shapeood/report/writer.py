"""``write_report``: every file of a report into one folder.

* ``results.csv``: every row and column (``method`` first, then OpenOOD's ``dataset, FPR@95,
  AUROC, AUPR_IN, AUPR_OUT, ACC``, then the extras; ``<metric>_std`` after them when
  aggregated); ``csv/<method>.csv``: exactly OpenOOD's per-postprocessor layout (means);
* ``results.json``: ``{"attrs": ..., "columns": ..., "rows": [...]}``;
* ``results.md``: the summary (best in bold) and the per-set table; ``results.tex``: the
  summary as a booktabs tabular;
* ``plots/``: ``roc_<set>.png``, ``hist_<set>.png`` (with per-sample scores), ``aps_<method>.png``
  (with APS grids); ``per_run/<label>.csv`` for aggregated reports;
* ``report.html``: one self-contained page.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shapeood.aggregation import STD_SUFFIX, is_aggregated
from shapeood.report.page import html_page
from shapeood.report.plots import edge_warnings, method_styles, plot_aps, plot_histograms, plot_roc
from shapeood.report.tables import (
    OPENOOD_COLUMNS,
    load_results,
    markdown_table,
    summary_latex,
    summary_markdown,
)

__all__ = ["write_report"]


def _results_frame(results: Any) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        return results
    if isinstance(results, (str, os.PathLike)):
        return load_results(results)
    raise ValueError(
        f"results must be a DataFrame from shapeood.evaluate or a results CSV/JSON path, got "
        f"{type(results).__name__}"
    )


def _load_scores(scores: Any) -> dict[str, dict[str, np.ndarray]]:
    if scores is None:
        return {}
    if isinstance(scores, (str, os.PathLike)):
        path = Path(scores)
        if not path.is_file():
            raise FileNotFoundError(f"no score file at {path}: give a scores.npz or leave it out")
        with np.load(path) as stored:
            out: dict[str, dict[str, np.ndarray]] = {}
            for key in stored.files:
                method, _, set_name = key.partition("/")
                out.setdefault(method, {})[set_name] = stored[key]
            return out
    if isinstance(scores, Mapping):
        return {
            m: {s: np.asarray(a, dtype=np.float64) for s, a in d.items()} for m, d in scores.items()
        }
    raise ValueError("scores must be {method: {'id': ..., set: ...}} or a score .npz path")


def _json_cell(value: Any) -> Any:
    """A JSON cell: Python scalars, NaN as null (floats keep every bit through ``repr``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "tolist", lambda: str(v))()))


def _json_payload(df: pd.DataFrame) -> dict[str, Any]:
    rows = [{k: _json_cell(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
    # per-run tables go to per_run/, per-run scores beside the report (not into the JSON)
    attrs = {k: v for k, v in df.attrs.items() if k not in ("run_tables", "run_scores")}
    return {"attrs": _plain(attrs), "columns": list(df.columns), "rows": rows}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "run"


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    leading = ["method", *OPENOOD_COLUMNS]
    first = [c for c in leading if c in df.columns]
    stds = [c for c in df.columns if str(c).endswith(STD_SUFFIX) and c not in first]
    rest = [c for c in df.columns if c not in first and c not in stds]
    frame = df[first + rest + stds]
    frame.attrs = dict(df.attrs)
    return frame


def _aps_runs(df: pd.DataFrame) -> list[tuple[str, Mapping[str, Any]]]:
    runs = df.attrs.get("runs")
    if runs:
        return [(str(r.get("label")), r.get("aps_tables") or {}) for r in runs]
    return [("", df.attrs.get("aps_tables") or {})]


def write_report(
    results: Any,
    out_dir: str | os.PathLike,
    scores: Any = None,
    title: str | None = None,
    runs: Sequence[pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """Write CSV, JSON, Markdown, LaTeX, plots and one self-contained HTML page.

    Args:
        results: the DataFrame of ``shapeood.evaluate`` or of ``aggregate`` (or a results
            CSV/JSON path).
        out_dir: output folder (created).
        scores: per-sample scores ``{method: {"id": ..., set: ...}}`` or a score ``.npz``;
            without them no ROC or histogram is drawn (aggregated reports: one run's scores).
        title: page title (default from the benchmark and model in ``results.attrs``).
        runs: the per-run tables of an aggregated ``results`` (default its
            ``attrs["run_tables"]``): written to ``per_run/`` and summarised on the page.

    Returns:
        ``{"csv", "json", "markdown", "latex", "html", "method_csv/<m>", "roc/<set>",
        "hist/<set>", "aps/<method>", "per_run/<label>"}`` -> path.
    """
    df = _results_frame(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    frame = _ordered(df)
    written["csv"] = out / "results.csv"
    frame.to_csv(written["csv"], index=False)
    written["json"] = out / "results.json"
    written["json"].write_text(json.dumps(_json_payload(frame), indent=1), encoding="utf-8")
    (out / "csv").mkdir(exist_ok=True)
    for method, part in frame.groupby("method", sort=False):
        path = out / "csv" / f"{_safe(method)}.csv"
        part[list(OPENOOD_COLUMNS)].to_csv(path, index=False, float_format="%.2f")
        written[f"method_csv/{method}"] = path

    page_title = title or "shapeood: {} on {}".format(
        frame.attrs.get("model", "model"), frame.attrs.get("benchmark", "benchmark")
    )
    written["markdown"] = out / "results.md"
    written["markdown"].write_text(
        f"# {page_title}\n\n## Summary\n\n{summary_markdown(frame)}\n\n"
        f"## Per set\n\n{markdown_table(frame)}\n",
        encoding="utf-8",
    )
    written["latex"] = out / "results.tex"
    written["latex"].write_text(summary_latex(frame, caption=page_title) + "\n", encoding="utf-8")

    run_tables = list(runs if runs is not None else frame.attrs.get("run_tables") or [])
    if run_tables:
        (out / "per_run").mkdir(exist_ok=True)
        labels = frame.attrs.get("run_labels") or [f"run{i + 1}" for i in range(len(run_tables))]
        for label, table in zip(labels, run_tables, strict=False):
            path = out / "per_run" / f"{_safe(label)}.csv"
            _ordered(table).to_csv(path, index=False)
            written[f"per_run/{label}"] = path

    plots = out / "plots"
    aps_images: dict[str, Path] = {}
    warnings: dict[str, list[str]] = {}
    methods: list[str] = []
    by_text: dict[str, dict[str, list[str]]] = {}
    for label, tables in _aps_runs(frame):
        for method, records in tables.items():
            if method not in methods:
                methods.append(method)
            for text in edge_warnings(method, records):
                by_text.setdefault(method, {}).setdefault(text, []).append(label)
    for method, texts in by_text.items():  # one line per warning, naming the runs it holds for
        for text, labels in texts.items():
            named = ", ".join(x for x in labels if x)
            warnings.setdefault(method, []).append(f"{named}: {text}" if named else text)
    for method in methods:
        per_run = [(label, tables.get(method, [])) for label, tables in _aps_runs(frame)]
        plots.mkdir(exist_ok=True)
        path = plot_aps(method, per_run, plots / f"aps_{_safe(method)}.png",
                        criterion=str(frame.attrs.get("aps_criterion") or "auroc"))  # fmt: skip
        if path is not None:
            aps_images[method] = written[f"aps/{method}"] = path

    roc_images: dict[str, Path] = {}
    hist_images: dict[str, Path] = {}
    loaded = _load_scores(scores)
    set_sizes: dict[str, int] = {}
    if loaded:
        plots.mkdir(exist_ok=True)
        sets: list[str] = []
        for sets_of_method in loaded.values():
            sets += [s for s in sets_of_method if s != "id" and s not in sets]
        styles = method_styles(list(loaded))
        convention = str(frame.attrs.get("fpr_convention") or "openood")
        for set_name in sets:
            set_sizes[set_name] = max(len(v[set_name]) for v in loaded.values() if set_name in v)
            roc = plot_roc(loaded, set_name, plots / f"roc_{_safe(set_name)}.png",
                           convention=convention, styles=styles)  # fmt: skip
            hist = plot_histograms(loaded, set_name, plots / f"hist_{_safe(set_name)}.png")
            roc_images[set_name] = written[f"roc/{set_name}"] = roc
            hist_images[set_name] = written[f"hist/{set_name}"] = hist
    scores_note = None
    if loaded and is_aggregated(frame):
        first = (frame.attrs.get("run_labels") or ["the first run"])[0]
        scores_note = f"Curves and histograms from the per-sample scores of one run: {first}."
    written["html"] = out / "report.html"
    written["html"].write_text(
        html_page(
            frame, page_title, roc_images=roc_images, hist_images=hist_images,
            aps_images=aps_images, aps_warnings=warnings, run_tables=run_tables,
            scores_note=scores_note, set_sizes=set_sizes,
        ),
        encoding="utf-8",
    )  # fmt: skip
    return written
