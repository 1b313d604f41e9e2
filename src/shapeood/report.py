"""Reports of ``evaluate`` results: CSV (OpenOOD layout), JSON, Markdown, plots, one HTML page.

``write_report(results, out_dir, scores=None)`` writes

* ``results.csv``: every row and column of the results (``method`` first, then OpenOOD's
  ``dataset, FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC``, then the extras); ``csv/<method>.csv``:
  exactly OpenOOD's per-postprocessor layout;
* ``results.json``: ``{"attrs": ..., "rows": [...]}`` (attrs = convention, APS choices, ...);
* ``results.md``: a Markdown table;
* with per-sample ``scores`` (``{method: {"id": ..., set: ...}}`` or a score ``.npz``), for each
  OOD set ``hist_<set>.png`` (ID vs OOD score histograms, one panel per method) and
  ``roc_<set>.png`` (ROC curves of all methods, ID positive);
* ``report.html``: all of the above on one self-contained page (images embedded as base64).

``load_results(path)`` reads ``results.csv`` or ``results.json`` back into the same DataFrame.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

OPENOOD_COLUMNS = ("dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC")
GROUP_MEANS = ("nearood", "farood")

__all__ = [
    "OPENOOD_COLUMNS",
    "format_table",
    "load_results",
    "markdown_table",
    "plot_histograms",
    "plot_roc",
    "write_report",
]


# ----------------------------------------------------------------------------- tables


def _results_frame(results: Any) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        return results
    if isinstance(results, (str, os.PathLike)):
        return load_results(results)
    raise ValueError(
        f"results must be a DataFrame from shapeood.evaluate or a results CSV/JSON path, got "
        f"{type(results).__name__}"
    )


def _attrs_from_columns(df: pd.DataFrame) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if "fpr_convention" in df.columns and len(df):
        attrs["fpr_convention"] = str(df["fpr_convention"].iloc[0])
    return attrs


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``results.csv`` or ``results.json`` written by ``write_report``.

    JSON restores ``df.attrs`` completely; CSV restores ``attrs["fpr_convention"]`` from its
    column (and anything in a ``results.json`` beside it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}: give a results.csv or results.json")
    if path.suffix.lower() == ".json":
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(payload, dict) or "rows" not in payload:
            raise ValueError(f"{path} is not a shapeood results JSON (no 'rows')")
        columns = payload.get("columns")
        df = pd.DataFrame(payload["rows"], columns=columns)
        for column in df.columns:
            if column in ("n_id", "n_ood"):
                df[column] = df[column].astype("int64")
        df.attrs.update(payload.get("attrs", {}))
        return df
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: load_results reads .csv or .json files")
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for column in ("params", "fitted"):
        if column in df.columns:
            df[column] = df[column].astype(str)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            df.attrs.update(json.loads(sidecar.read_text(encoding="utf-8")).get("attrs", {}))
        except (ValueError, AttributeError):
            pass
    for key, value in _attrs_from_columns(df).items():
        df.attrs.setdefault(key, value)
    return df


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _table_columns(df: pd.DataFrame) -> list[str]:
    other = [c for c in df.columns if c.startswith("FPR@95_")]
    columns = ["method", *OPENOOD_COLUMNS, "ACC_shaped", *other]
    return [c for c in columns if c in df.columns]


def format_table(df: pd.DataFrame, digits: int = 2) -> str:
    """A plain-text table of the main columns (what ``shapeood eval`` prints)."""
    columns = _table_columns(df)
    cells = [[_fmt(v, digits) for v in row] for row in df[columns].itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    header = zip(columns, widths, strict=True)
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(header))]
    previous = None
    for row in cells:
        if previous is not None and row[0] != previous:
            lines.append("")
        previous = row[0]
        lines.append(
            "  ".join(
                v.rjust(w) if i > 1 else v.ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    convention = df.attrs.get("fpr_convention")
    if convention is None and "fpr_convention" in df.columns and len(df):
        convention = df["fpr_convention"].iloc[0]
    if convention:
        lines.append(f"\nFPR@95 convention: {convention} (metrics in percent)")
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
    """The main columns as a GitHub Markdown table (group means in bold)."""
    columns = _table_columns(df)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in df[columns].itertuples(index=False):
        cells = [_fmt(v, digits) for v in row]
        if row[1] in GROUP_MEANS:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


def _load_scores(scores: Any) -> dict[str, dict[str, np.ndarray]]:
    if scores is None:
        return {}
    if isinstance(scores, (str, os.PathLike)):
        from shapeood.evaluation import load_score_file

        return load_score_file(scores)
    if isinstance(scores, Mapping):
        return {
            m: {s: np.asarray(a, dtype=np.float64) for s, a in d.items()} for m, d in scores.items()
        }
    raise ValueError("scores must be {method: {'id': ..., set: ...}} or a score .npz path")


def _figure(n_panels: int, cols: int = 4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = max(1, min(cols, n_panels))
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat)


def plot_histograms(
    scores: Mapping[str, Mapping[str, np.ndarray]], set_name: str, path: Path
) -> Path:
    """One panel per method: density histograms of ID and ``set_name`` scores."""
    methods = [m for m in scores if set_name in scores[m] and "id" in scores[m]]
    plt, fig, axes = _figure(len(methods))
    for ax, method in zip(axes, methods, strict=False):
        id_s, ood_s = np.asarray(scores[method]["id"]), np.asarray(scores[method][set_name])
        both = np.concatenate([id_s, ood_s])
        both = both[np.isfinite(both)]
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        for values, label, color in ((id_s, "ID", "tab:blue"), (ood_s, set_name, "tab:red")):
            density, _ = np.histogram(values, bins=bins, density=True)
            ax.stairs(density, bins, fill=True, alpha=0.5, color=color, label=label)
        ax.set_title(method, fontsize=9)
        ax.tick_params(labelsize=7)
    if methods:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"score histograms: ID vs {set_name} (higher = more ID)", fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.08, top=0.88, hspace=0.45, wspace=0.25)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def roc_points(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC with ID positive: (FPR = OOD accepted, TPR = ID accepted) over all thresholds."""
    from sklearn.metrics import roc_curve

    y = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    s = np.concatenate([np.asarray(id_scores, float), np.asarray(ood_scores, float)])
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr


def plot_roc(scores: Mapping[str, Mapping[str, np.ndarray]], set_name: str, path: Path) -> Path:
    """ROC curves of every method for ID vs ``set_name`` in one panel."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc

    fig, ax = plt.subplots(figsize=(5.0, 4.2))
    for method, sets in scores.items():
        if set_name not in sets or "id" not in sets:
            continue
        fpr, tpr = roc_points(sets["id"], sets[set_name])
        ax.plot(fpr, tpr, lw=1.2, label=f"{method} ({100 * auc(fpr, tpr):.1f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.axhline(0.95, color="grey", lw=0.6, ls="--")
    ax.set_xlabel(f"FPR ({set_name} accepted as ID)")
    ax.set_ylabel("TPR (ID accepted)")
    ax.set_title(f"ROC: ID vs {set_name} (AUROC %)", fontsize=10)
    ax.legend(fontsize=6, loc="lower right")
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- writing


def _json_payload(df: pd.DataFrame) -> dict[str, Any]:
    rows = [{k: _cell(v) for k, v in record.items()} for record in df.to_dict(orient="records")]
    return {"attrs": _plain(dict(df.attrs)), "columns": list(df.columns), "rows": rows}


def _cell(value: Any) -> Any:
    """A JSON cell: Python scalars, NaN as null (floats keep every bit through ``repr``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "tolist", lambda: str(v))()))


def _image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html_page(df: pd.DataFrame, images: list[tuple[str, Path]], title: str) -> str:
    attrs = dict(df.attrs)
    summary = {
        k: attrs[k]
        for k in ("benchmark", "model", "protocol", "fpr_convention", "aps", "plain_accuracy")
        if k in attrs
    }
    table = df[_table_columns(df)].to_html(
        index=False, float_format=lambda v: f"{v:.2f}", na_rep="", border=0, classes="results"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "table.results{border-collapse:collapse;font-size:13px}"
        "table.results td,table.results th{padding:2px 8px;border-bottom:1px solid #ddd;"
        "text-align:right}pre{background:#f6f6f6;padding:8px;font-size:12px}"
        "img{max-width:100%;margin:6px 0}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Metrics in percent. FPR@95 under the convention named below; the column "
        "FPR@95_&lt;other&gt; gives the other convention. ACC = plain network, ACC_shaped = "
        "the method's own predictions.</p>",
        f"<pre>{html.escape(json.dumps(_plain(summary), indent=1))}</pre>",
        table,
    ]
    if attrs.get("aps_choices"):
        choices = html.escape(json.dumps(_plain(attrs["aps_choices"]), indent=1))
        parts += ["<h2>APS choices</h2>", f"<pre>{choices}</pre>"]
    if attrs.get("notes"):
        items = "".join(f"<li>{html.escape(str(n))}</li>" for n in attrs["notes"])
        parts += ["<h2>Notes</h2>", f"<ul>{items}</ul>"]
    if images:
        parts.append("<h2>Score distributions and ROC curves</h2>")
        for caption, path in images:
            parts += [f"<h3>{html.escape(caption)}</h3>", _image_tag(path, caption)]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    results: Any, out_dir: str | os.PathLike, scores: Any = None, title: str | None = None
) -> dict[str, Path]:
    """Write CSV, JSON, Markdown, plots and one self-contained HTML page into ``out_dir``.

    Args:
        results: the DataFrame of ``shapeood.evaluate`` (or a results CSV/JSON path).
        scores: per-sample scores ``{method: {"id": ..., set: ...}}`` or a score ``.npz``;
            without them no plots are drawn.
        title: page title (default from the benchmark and model in ``results.attrs``).

    Returns:
        ``{"csv", "json", "markdown", "html", "method_csv/<m>", "hist/<set>", "roc/<set>"}``
        -> path.
    """
    df = _results_frame(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    leading = ["method", *OPENOOD_COLUMNS]
    ordered = [c for c in leading if c in df.columns] + [c for c in df.columns if c not in leading]
    frame = df[ordered]
    frame.attrs = dict(df.attrs)
    written["csv"] = out / "results.csv"
    frame.to_csv(written["csv"], index=False)
    written["json"] = out / "results.json"
    written["json"].write_text(json.dumps(_json_payload(frame), indent=1), encoding="utf-8")
    (out / "csv").mkdir(exist_ok=True)
    for method, part in frame.groupby("method", sort=False):
        path = out / "csv" / f"{method}.csv"
        part[list(OPENOOD_COLUMNS)].to_csv(path, index=False, float_format="%.2f")
        written[f"method_csv/{method}"] = path
    markdown = markdown_table(frame)
    written["markdown"] = out / "results.md"
    written["markdown"].write_text(markdown + "\n", encoding="utf-8")

    images: list[tuple[str, Path]] = []
    loaded = _load_scores(scores)
    if loaded:
        sets = []
        for sets_of_method in loaded.values():
            sets += [s for s in sets_of_method if s != "id" and s not in sets]
        (out / "plots").mkdir(exist_ok=True)
        for set_name in sets:
            hist = plot_histograms(loaded, set_name, out / "plots" / f"hist_{set_name}.png")
            roc = plot_roc(loaded, set_name, out / "plots" / f"roc_{set_name}.png")
            written[f"hist/{set_name}"], written[f"roc/{set_name}"] = hist, roc
            images += [(f"{set_name}: score histograms", hist), (f"{set_name}: ROC", roc)]
    page_title = title or "shapeood: {} on {}".format(
        frame.attrs.get("model", "model"), frame.attrs.get("benchmark", "benchmark")
    )
    written["html"] = out / "report.html"
    written["html"].write_text(_html_page(frame, images, page_title), encoding="utf-8")
    return written
