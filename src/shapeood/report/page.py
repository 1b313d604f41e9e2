"""The self-contained HTML report (no script, no external resource: images are data URIs).

Order: header table (models, benchmark, protocol, convention, APS, ID accuracy, set sizes, date,
version), summary (one row per method, best in bold, the convention noted), per-run APS choices
when aggregated, per-set details (collapsible), APS grids (with edge warnings), ROC curves,
score histograms, notes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from shapeood.aggregation import is_aggregated
from shapeood.report.plots import FEW_SAMPLES, label_of
from shapeood.report.tables import (
    GROUP_MEANS,
    _arrow,
    _detail_cells,
    _summary_cells,
    convention_note,
    fewer_samples,
    summary_frame,
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1320px;padding:0 16px;color:#1b1b1b;line-height:1.4}
h1{font-size:24px;margin-bottom:8px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
td,th{padding:3px 10px;border-bottom:1px solid #e2e2e2;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
table.meta th{text-align:left;background:none;font-weight:600;width:1%}
table.meta td{text-align:left;white-space:normal}
tr.group td{font-weight:600;background:#fafafa}
p.note{font-size:13px;color:#444;margin:4px 0 10px}
div.warn{background:#fff4ce;border:1px solid #e0b000;padding:6px 10px;margin:6px 0;font-size:14px}
details{margin:4px 0}summary{cursor:pointer;font-weight:600}
img{max-width:100%;height:auto;display:block;margin:6px 0}
div.cards{display:flex;flex-wrap:wrap;gap:8px 24px}div.card{flex:0 1 640px;min-width:0}
div.card.wide{flex-basis:100%}div.scroll{overflow-x:auto}
"""

__all__ = ["html_page"]


def _e(value: Any) -> str:
    return html.escape(str(value))


def image_tag(path: Path, alt: str) -> str:
    """``<img>`` with the PNG embedded as a data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _params_text(params: Mapping[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={text}")
    return ", ".join(parts) or "(defaults)"


def _accuracy_text(attrs: Mapping[str, Any]) -> str:
    acc = attrs.get("plain_accuracy")
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return "n/a"
    text = f"{float(acc):.2f} %"
    if attrs.get("plain_accuracy_std") is not None:
        text = f"{float(acc):.2f} ± {float(attrs['plain_accuracy_std']):.2f} %"
    return text + " (plain network, ID test)"


def _sizes_text(attrs: Mapping[str, Any]) -> str:
    sizes = attrs.get("sizes") or {}
    if not sizes:
        return "n/a"
    return ", ".join(f"{_e(k)} {int(v):,}" for k, v in sizes.items())


def _header(df: pd.DataFrame) -> str:
    from shapeood import __version__

    a = df.attrs
    aggregated = is_aggregated(df)
    convention = a.get("fpr_convention", "")
    rows = [
        ("Model" + ("s" if aggregated else ""), _e(a.get("model", "n/a"))),
    ]
    if aggregated:
        labels = a.get("run_labels") or []
        rows.append(("Runs", f"{len(labels)}: " + ", ".join(_e(x) for x in labels)))
    rows += [
        ("Benchmark", _e(a.get("benchmark", "n/a"))),
        ("Protocol", _e(a.get("protocol", "n/a"))),
        ("FPR@95 convention", _e(convention or "n/a")),
        ("APS", "yes (hyperparameters searched on ID-val vs OOD-val)" if a.get("aps") else "no"),
        ("ID accuracy", _e(_accuracy_text(a))),
        ("Set sizes", _sizes_text(a)),
        ("Date", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("shapeood", _e(__version__)),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="meta">{body}</table>'


def _summary(df: pd.DataFrame, element_id: str | None = "summary") -> str:
    summary = summary_frame(df)
    columns, rows = _summary_cells(summary, 2, " ± ", lambda t: f"<b>{t}</b>")
    smaller = fewer_samples(df)
    head = "".join(f"<th>{_e(c + _arrow(c))}</th>" for c in ["method", *columns])
    body = "".join(
        "<tr>" + "".join(f"<td>{c if '<b>' in c else _e(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    note = (
        f"{_e(convention_note(df))}. Near/far: unweighted mean over the sets of the group "
        "(OpenOOD). Best value of each column in bold (lowest FPR@95, highest AUROC). "
        "ID ACC: the method's own predictions where it changes the logits, else the plain "
        "network's."
    )
    if smaller:
        sizes = "; ".join(f"{_e(m)}: {n}" for m, n in smaller.items())
        note += f" † evaluated on fewer samples than the other methods ({sizes}); not marked best."
    ident = f' id="{element_id}"' if element_id else ""
    return (
        f'<table class="summary"{ident}><thead><tr>{head}</tr></thead>'
        f'<tbody>{body}</tbody></table><p class="note">{note}</p>'
    )


def _runs_section(df: pd.DataFrame, run_tables: Sequence[pd.DataFrame] | None) -> list[str]:
    runs = df.attrs.get("runs") or []
    if not runs:
        return []
    body = ""
    with_weights = any(run.get("weights") for run in runs)
    for run in runs:
        acc = run.get("plain_accuracy")
        acc_text = "" if acc is None else f"{float(acc):.2f}"
        cells = [_e(run.get("label")), _e(run.get("model"))]
        cells += [_e(run.get("weights") or "")] if with_weights else []
        body += "<tr>" + "".join(f"<td>{c}</td>" for c in [*cells, acc_text]) + "</tr>"
    weights_head = "<th>weights</th>" if with_weights else ""
    parts = [
        "<h2>Runs</h2>",
        '<div class="scroll"><table class="runs"><tr><th>run</th><th>model</th>'
        f"{weights_head}<th>ID acc</th></tr>{body}</table></div>",
    ]
    methods: list[str] = []
    for run in runs:
        methods += [m for m in run.get("aps_choices", {}) if m not in methods]
    if methods:
        head = "<th>method</th>" + "".join(f"<th>{_e(r.get('label'))}</th>" for r in runs)
        rows = ""
        for method in methods:
            cells = [_e(method)] + [
                _e(_params_text(r.get("aps_choices", {}).get(method, {}))) for r in runs
            ]
            rows += "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        parts += [
            "<h3>APS choices per run</h3>",
            f'<div class="scroll"><table class="aps-runs"><tr>{head}</tr>{rows}</table></div>',
        ]
    for label, table in zip(df.attrs.get("run_labels", []), run_tables or [], strict=False):
        parts.append(f"<details><summary>summary of {_e(label)}</summary>{_summary(table, None)}"
                     "</details>")  # fmt: skip
    return parts


def _detail(df: pd.DataFrame) -> list[str]:
    columns, cells = _detail_cells(df)
    parts = ["<h2>Per-set results</h2>",
             '<p class="note">One row per OOD set and the near/far means; click a method to '
             "open its table.</p>"]  # fmt: skip
    methods = list(dict.fromkeys(df["method"]))
    for method in methods:
        rows = [r for r in cells if r[0] == method]
        head = "".join(f"<th>{_e(c)}</th>" for c in columns[1:])
        body = ""
        for r in rows:
            cls = ' class="group"' if r[1] in GROUP_MEANS else ""
            body += f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in r[1:]) + "</tr>"
        params = df.loc[df["method"] == method, "params"] if "params" in df.columns else None
        param_text = ""
        if params is not None and len(params):
            param_text = f'<p class="note">parameters: {_e(params.iloc[0])}</p>'
        parts.append(
            f"<details><summary>{_e(method)}</summary>{param_text}"
            f'<table class="detail"><tr>{head}</tr>{body}</table></details>'
        )
    return parts


def _n_params(runs: Sequence[Mapping[str, Any]], method: str) -> int:
    for run in runs:
        records = run.get("aps_tables", {}).get(method) or []
        if records:
            return len([k for k in records[0] if k not in ("auroc", "fpr95", "best")])
    return 0


def _aps(
    df: pd.DataFrame, aps_images: Mapping[str, Path], warnings: Mapping[str, list[str]]
) -> list[str]:
    a = df.attrs
    runs = a.get("runs") or [{"label": "", "aps_choices": a.get("aps_choices", {}),
                              "aps_tables": a.get("aps_tables", {})}]  # fmt: skip
    methods = []
    for run in runs:
        methods += [m for m in run.get("aps_tables", {}) if m not in methods]
    if not methods:
        return []
    parts = [
        "<h2>APS: hyperparameter search</h2>",
        f'<p class="note">Criterion: {_e(label_of(str(a.get("aps_criterion") or "auroc")))} of '
        "ID-val vs OOD-val at every grid point; the highest wins (ties: the first grid "
        "point).</p>",
    ]
    parts.append('<div class="cards">')
    for method in methods:
        wide = len(runs) > 1 and _n_params(runs, method) == 2
        parts.append(f'<div class="card{" wide" if wide else ""}"><h3>{_e(method)}</h3>')
        choices = [
            (run.get("label"), run.get("aps_choices", {}).get(method))
            for run in runs
            if method in run.get("aps_choices", {})
        ]
        text = "; ".join(
            (f"{_e(label)}: " if label else "") + _e(_params_text(c)) for label, c in choices
        )
        parts.append(f'<p class="note">chosen: {text}</p>')
        for warning in warnings.get(method, []):
            parts.append(f'<div class="warn">&#9888; {_e(warning)}</div>')
        if method in aps_images:
            parts.append(image_tag(aps_images[method], f"APS grid of {method}"))
        else:
            records = runs[0].get("aps_tables", {}).get(method, [])
            if records:
                table = pd.DataFrame(records).to_html(
                    index=False, border=0, float_format="{:.4f}".format
                )
                parts.append(table)
        parts.append("</div>")
    parts.append("</div>")
    return parts


def html_page(
    df: pd.DataFrame,
    title: str,
    *,
    roc_images: Mapping[str, Path] | None = None,
    hist_images: Mapping[str, Path] | None = None,
    aps_images: Mapping[str, Path] | None = None,
    aps_warnings: Mapping[str, list[str]] | None = None,
    run_tables: Sequence[pd.DataFrame] | None = None,
    scores_note: str | None = None,
    set_sizes: Mapping[str, int] | None = None,
) -> str:
    """The whole page as one string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _header(df),
        "<h2>Summary</h2>",
        _summary(df),
    ]
    parts += _runs_section(df, run_tables)
    parts += _detail(df)
    parts += _aps(df, aps_images or {}, aps_warnings or {})
    if roc_images:
        parts.append("<h2>ROC curves</h2>")
        parts.append(f'<p class="note">{_e(scores_note)}</p>' if scores_note else "")
        for set_name, path in roc_images.items():
            parts += [f"<h3>ID vs {_e(set_name)}</h3>", image_tag(path, f"ROC: ID vs {set_name}")]
    if hist_images:
        parts.append("<h2>Score histograms</h2>")
        for set_name, path in hist_images.items():
            parts.append(f"<h3>ID vs {_e(set_name)}</h3>")
            n = (set_sizes or {}).get(set_name)
            if n is not None and n < FEW_SAMPLES:
                parts.append(
                    f'<div class="warn">&#9888; {_e(set_name)} has only {n} samples (fewer than '
                    f"{FEW_SAMPLES}): its histogram and metrics are noisy.</div>"
                )
            parts.append(image_tag(path, f"score histograms: ID vs {set_name}"))
    notes = list(df.attrs.get("notes") or [])
    if notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        parts += ["<h2>Notes</h2>", f"<ul>{items}</ul>"]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
