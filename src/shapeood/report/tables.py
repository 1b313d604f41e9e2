"""Result tables: reading them back, the one-row-per-method summary, text/Markdown/LaTeX.

The **summary** has one row per method and, for each OOD group (near, far), FPR@95 and AUROC of
the group mean row (``nearood``/``farood``: unweighted mean over the group's sets, as OpenOOD),
plus the ID accuracy of the method's predictions (``ACC_shaped`` where the method changes the
logits, else the plain network's ``ACC``). The best value of each OOD column (lowest FPR@95,
highest AUROC, compared as printed) is marked; aggregated tables print ``mean ± std``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shapeood.aggregation import STD_SUFFIX, is_aggregated

OPENOOD_COLUMNS = ("dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC")
GROUP_MEANS = ("nearood", "farood")
GROUP_ROWS = {"near": "nearood", "far": "farood"}
GROUP_TITLES = {"near": "Near-OOD", "far": "Far-OOD"}
SUMMARY_METRICS = ("FPR@95", "AUROC")
LOWER_IS_BETTER = ("FPR@95",)
ACC_COLUMN = "ID ACC"
PLUS_MINUS = "±"

__all__ = [
    "GROUP_MEANS",
    "OPENOOD_COLUMNS",
    "best_cells",
    "convention_note",
    "fewer_samples",
    "format_summary",
    "format_table",
    "load_results",
    "markdown_table",
    "summary_frame",
    "summary_latex",
    "summary_markdown",
]


# ----------------------------------------------------------------------------- reading


def _attrs_from_columns(df: pd.DataFrame) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if "fpr_convention" in df.columns and len(df):
        attrs["fpr_convention"] = str(df["fpr_convention"].iloc[0])
    return attrs


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``results.csv`` or ``results.json`` written by ``write_report`` (or a run folder
    holding one of them; JSON preferred).

    JSON restores ``df.attrs`` completely; CSV restores ``attrs["fpr_convention"]`` from its
    column (and anything in a ``results.json`` beside it).
    """
    path = Path(path)
    if path.is_dir():
        for name in ("results.json", "results.csv"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise FileNotFoundError(
                f"no results.json or results.csv in {path}: give a folder written by "
                "'shapeood eval --out' or a results file"
            )
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}: give a results.csv or results.json")
    if path.suffix.lower() == ".json":
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
            raise ValueError(f"{path} is not a shapeood results JSON (no 'rows' list)")
        columns = payload.get("columns")
        df = pd.DataFrame(payload["rows"], columns=columns)
        for column in df.columns:
            if column in ("n_id", "n_ood") and df[column].notna().all():
                try:
                    df[column] = df[column].astype("int64")
                except (TypeError, ValueError):
                    pass
        df.attrs.update(payload.get("attrs", {}))
        return df
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: load_results reads .csv or .json files")
    from shapeood.errors import BadFileError, reading

    with reading(path, "results file", "give a results.csv written by 'shapeood eval --out'"):
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in ("method", "dataset") if c not in df.columns]
    if missing:
        raise BadFileError(
            f"{path} is not a shapeood results file: no {' or '.join(missing)} column "
            f"(columns: {', '.join(map(str, df.columns[:8]))})",
            path,
        )
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


# ----------------------------------------------------------------------------- cells


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _cell(mean: Any, std: Any = None, digits: int = 2, sep: str = f" {PLUS_MINUS} ") -> str:
    text = _fmt(mean, digits)
    if text and std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f"{sep}{_fmt(float(std), digits)}"
    return text


def _table_columns(df: pd.DataFrame) -> list[str]:
    other = [c for c in df.columns if c.startswith("FPR@95_") and not c.endswith(STD_SUFFIX)]
    columns = ["method", *OPENOOD_COLUMNS, "ACC_shaped", *other]
    return [c for c in columns if c in df.columns]


def _detail_cells(df: pd.DataFrame, digits: int = 2) -> tuple[list[str], list[list[str]]]:
    columns = _table_columns(df)
    cells = []
    for _, row in df.iterrows():
        line = []
        for c in columns:
            std = row.get(c + STD_SUFFIX) if (c + STD_SUFFIX) in df.columns else None
            line.append(_cell(row[c], std, digits))
        cells.append(line)
    return columns, cells


def convention_note(df: pd.DataFrame) -> str:
    """One sentence naming the FPR@95 convention (and the aggregation) of ``df``."""
    convention = df.attrs.get("fpr_convention")
    if convention is None and "fpr_convention" in df.columns and len(df):
        convention = str(df["fpr_convention"].iloc[0])
    meaning = {
        "openood": "OOD positive: % of ID samples rejected when 95% of OOD samples are caught",
        "classic": "ID positive: % of OOD samples accepted when 95% of ID samples are accepted",
        "nearest": "ID positive, at the ROC point whose ID recall is nearest 95%",
    }.get(str(convention), "")
    text = f"FPR@95 convention: {convention}" + (f" ({meaning})" if meaning else "")
    text += "; metrics in percent"
    if is_aggregated(df):
        n = df.attrs.get("n_runs")
        text += f"; mean {PLUS_MINUS} population std (ddof=0) over {n or 'several'} runs"
    return text


def format_table(df: pd.DataFrame, digits: int = 2) -> str:
    """A plain-text table of every row (method x dataset) and the main columns."""
    columns, cells = _detail_cells(df, digits)
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i > 1 else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    lines = [line(columns)]
    previous = None
    for row in cells:
        if previous is not None and row[0] != previous:
            lines.append("")
        previous = row[0]
        lines.append(line(row))
    lines.append("\n" + convention_note(df))
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
    """Every row and the main columns as a GitHub Markdown table (group means in bold)."""
    columns, cells = _detail_cells(df, digits)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in cells:
        if row[1] in GROUP_MEANS:
            row = [f"**{c}**" if c else c for c in row]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- summary


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per method (index), columns ``"near FPR@95"``, ``"near AUROC"``, ``"far ..."``
    and ``"ID ACC"``; with ``<column>_std`` twins when ``df`` is aggregated."""
    aggregated = is_aggregated(df)
    methods = list(dict.fromkeys(df["method"]))
    groups = [g for g, row in GROUP_ROWS.items() if (df["dataset"] == row).any()]
    records = []
    for method in methods:
        part = df[df["method"] == method]
        record: dict[str, Any] = {"method": method}
        for group in groups:
            row = part[part["dataset"] == GROUP_ROWS[group]]
            for metric in SUMMARY_METRICS:
                name = f"{group} {metric}"
                record[name] = float(row[metric].iloc[0]) if len(row) else math.nan
                if aggregated:
                    std = metric + STD_SUFFIX
                    has = len(row) and std in row
                    record[name + STD_SUFFIX] = float(row[std].iloc[0]) if has else math.nan
        first = part.iloc[0]
        shaped = first.get("ACC_shaped", math.nan)
        use = "ACC_shaped" if shaped is not None and not pd.isna(shaped) else "ACC"
        record[ACC_COLUMN] = float(first[use]) if use in first else math.nan
        if aggregated:
            record[ACC_COLUMN + STD_SUFFIX] = float(first.get(use + STD_SUFFIX, math.nan))
        records.append(record)
    summary = pd.DataFrame(records).set_index("method")
    summary.attrs = dict(df.attrs)
    summary.attrs["fewer_samples"] = fewer_samples(df)
    return summary


def fewer_samples(df: pd.DataFrame) -> dict[str, str]:
    """``{method: "n_id ID / n_ood OOD"}`` for methods scored on fewer samples than the most."""
    if "n_id" not in df.columns:
        return {}
    sizes = {}
    for method, part in df.groupby("method", sort=False):
        sets = part[~part["dataset"].isin(GROUP_MEANS)]
        try:
            sizes[method] = (int(part["n_id"].iloc[0]), int(sets["n_ood"].min()))
        except (TypeError, ValueError):
            return {}
    if not sizes:
        return {}
    most = max(n for n, _ in sizes.values())
    return {m: f"{i} ID / {o} per OOD set" for m, (i, o) in sizes.items() if i < most}


def _value_columns(summary: pd.DataFrame) -> list[str]:
    return [c for c in summary.columns if not c.endswith(STD_SUFFIX)]


def best_cells(summary: pd.DataFrame, digits: int = 2) -> dict[str, set[str]]:
    """``{column: methods holding its best value}`` for the OOD columns (ties all marked;
    values compared as printed, rounded to ``digits``). Methods scored on fewer samples than
    the others (ODIN's capped sets) do not compete."""
    best: dict[str, set[str]] = {}
    fewer = set(summary.attrs.get("fewer_samples") or ())
    competing = [m for m in summary.index if m not in fewer] or list(summary.index)
    for column in _value_columns(summary):
        metric = column.split(" ", 1)[-1]
        if metric not in SUMMARY_METRICS:
            continue
        values = summary.loc[competing, column].round(digits)
        if values.isna().all():
            continue
        target = values.min() if metric in LOWER_IS_BETTER else values.max()
        best[column] = {m for m, v in values.items() if v == target}
    return best


def _summary_cells(
    summary: pd.DataFrame, digits: int, sep: str, mark: Any
) -> tuple[list[str], list[list[str]]]:
    best = best_cells(summary, digits)
    fewer = summary.attrs.get("fewer_samples") or {}
    columns = _value_columns(summary)
    rows = []
    for method, row in summary.iterrows():
        cells = [f"{method} †" if method in fewer else str(method)]
        for column in columns:
            std_name = column + STD_SUFFIX
            std = row[std_name] if std_name in summary.columns else None
            text = _cell(row[column], std, digits, sep)
            if method in best.get(column, ()):
                text = mark(text)
            cells.append(text)
        rows.append(cells)
    return columns, rows


def _arrow(column: str) -> str:
    metric = column.split(" ", 1)[-1]
    if metric not in SUMMARY_METRICS:
        return ""
    return " ↓" if metric in LOWER_IS_BETTER else " ↑"


def format_summary(df: pd.DataFrame, digits: int = 2) -> str:
    """The summary as aligned plain text (``*`` marks the best value of a column)."""
    summary = summary_frame(df)
    columns, rows = _summary_cells(summary, digits, f" {PLUS_MINUS} ", lambda t: t + " *")
    smaller = summary.attrs["fewer_samples"]
    header = ["method", *(c + _arrow(c) for c in columns)]
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: B905
        for r in table
    ]
    note = convention_note(df)
    lines.append("")
    lines.append(f"{note}; near/far = mean over the group's sets; * best of its column")
    if smaller:
        sizes = "; ".join(f"{m}: {n}" for m, n in smaller.items())
        lines.append(f"† on fewer samples than the other methods, not marked best ({sizes})")
    return "\n".join(lines)


def summary_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """The summary as a GitHub Markdown table, best of each column in bold, and its note."""
    summary = summary_frame(df)
    columns, rows = _summary_cells(summary, digits, f" {PLUS_MINUS} ", lambda t: f"**{t}**")
    header = ["method", *(c + _arrow(c) for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "|".join("---:" for _ in columns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"{convention_note(df)}; near/far = mean over the group's sets; best in bold."]
    fewer = summary.attrs["fewer_samples"]
    if fewer:
        sizes = "; ".join(f"{m}: {n}" for m, n in fewer.items())
        lines[-1] += f" † on fewer samples than the other methods, not ranked ({sizes})."
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                          ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):  # fmt: skip
        text = text.replace(char, escaped)
    return text


def summary_latex(df: pd.DataFrame, digits: int = 2, caption: str | None = None) -> str:
    """The summary as a booktabs ``tabular`` (best in ``\\textbf``), ready to paste."""
    summary = summary_frame(df)
    columns, rows = _summary_cells(summary, digits, r" $\pm$ ", lambda t: r"\textbf{" + t + "}")
    groups = list(dict.fromkeys(c.split(" ", 1)[0] for c in columns if c != ACC_COLUMN))
    lines = [
        f"% {_latex_escape(convention_note(df)).replace(PLUS_MINUS, '+-')}",
        r"% needs \usepackage{booktabs}",
    ]
    if caption:
        lines.append(f"% {caption}")
    lines.append(r"\begin{tabular}{l" + "r" * len(columns) + "}")
    lines.append(r"\toprule")
    top = ["Method"]
    rules = []
    position = 2
    for group in groups:
        width = sum(1 for c in columns if c.startswith(group + " "))
        top.append(r"\multicolumn{" + str(width) + "}{c}{" + GROUP_TITLES.get(group, group) + "}")
        rules.append(r"\cmidrule(lr){" + f"{position}-{position + width - 1}" + "}")
        position += width
    if ACC_COLUMN in columns:
        top.append("")
    lines.append(" & ".join(top) + r" \\")
    if rules:
        lines.append("".join(rules))
    second = [""]
    for column in columns:
        metric = column.split(" ", 1)[-1] if column != ACC_COLUMN else "ID ACC"
        arrow = _arrow(column).replace(" ↓", r" $\downarrow$").replace(" ↑", r" $\uparrow$")
        second.append(_latex_escape(metric) + arrow)
    lines.append(" & ".join(second) + r" \\")
    lines.append(r"\midrule")
    for row in rows:
        lines.append(" & ".join([_latex_escape(row[0]), *row[1:]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)
