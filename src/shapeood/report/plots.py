"""Figures of a report: ROC curves, score histograms, APS grids (PNG at 144 dpi).

ROC curves are drawn in the orientation of the table's FPR@95 convention, and the marker sits
at the very point the table reads its FPR@95 from:

* ``openood`` (OOD positive): x = FPR = fraction of ID samples flagged as OOD, y = TPR =
  fraction of OOD samples caught; the marker is the first ROC point with TPR >= 0.95.
* ``classic`` / ``nearest`` (ID positive): x = fraction of OOD samples accepted as ID, y =
  fraction of ID samples accepted; the marker is at the table's FPR@95 and the ID recall there.

Each method keeps one colour and one line style in every figure (20 colours x 4 styles).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 144
RECALL = 0.95
FEW_SAMPLES = 100
LINE_STYLES = ("-", "--", "-.", ":")

__all__ = [
    "DPI",
    "FEW_SAMPLES",
    "edge_warnings",
    "fpr95_point",
    "method_styles",
    "plot_aps",
    "plot_histograms",
    "plot_roc",
    "roc_points",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def method_styles(methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{method: {"color", "linestyle"}}``: distinct colours (tab20, dark shades first) and
    line styles cycling with the index, so that no two of up to 80 methods look alike."""
    plt = _pyplot()
    palette = plt.get_cmap("tab20").colors
    order = [*palette[0::2], *palette[1::2]]
    styles = {}
    for i, method in enumerate(methods):
        styles[method] = {
            "color": order[i % len(order)],
            "linestyle": LINE_STYLES[(i + i // len(order)) % len(LINE_STYLES)],
        }
    return styles


# ----------------------------------------------------------------------------- ROC


def roc_points(
    id_scores: np.ndarray, ood_scores: np.ndarray, convention: str = "classic"
) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)`` over all thresholds (scores: higher = more ID).

    ``convention="openood"``: OOD positive (x = ID rejected, y = OOD caught); otherwise ID
    positive (x = OOD accepted, y = ID accepted).
    """
    from shapeood._curves import roc_curve

    id_s = np.asarray(id_scores, dtype=np.float64)
    ood_s = np.asarray(ood_scores, dtype=np.float64)
    s = np.concatenate([id_s, ood_s])
    if convention == "openood":
        y = np.concatenate([np.zeros(len(id_s)), np.ones(len(ood_s))])
        fpr, tpr, _ = roc_curve(y, -s)
    else:
        y = np.concatenate([np.ones(len(id_s)), np.zeros(len(ood_s))])
        fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr


def fpr95_point(
    id_scores: np.ndarray, ood_scores: np.ndarray, convention: str = "openood"
) -> tuple[float, float]:
    """The ROC point ``(x, y)`` (fractions) where the table's FPR@95 is read, in the
    orientation of ``roc_points(..., convention)``: x equals ``metrics.fpr_at_95``."""
    from shapeood import metrics

    x = float(metrics.fpr_at_95(id_scores, ood_scores, convention=convention))
    if convention == "openood":
        fpr, tpr = roc_points(id_scores, ood_scores, "openood")
        i = int(np.argmax(tpr >= RECALL))
        return float(fpr[i]), float(tpr[i])
    id_s = np.sort(np.asarray(id_scores, dtype=np.float64))
    if convention == "classic":
        threshold = id_s[round((1 - RECALL) * id_s.size)]
        return x, float(np.mean(id_s > threshold))
    fpr, tpr = roc_points(id_scores, ood_scores, convention)
    i = int(np.argmin(np.abs(tpr - RECALL)))
    return x, float(tpr[i])


def plot_roc(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    set_name: str,
    path: Path,
    convention: str = "openood",
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """ROC curves of every method for ID vs ``set_name``: linear FPR (left), log FPR (right),
    the FPR@95 point marked on each curve; legend beside the panels."""
    from shapeood._curves import auc

    plt = _pyplot()
    methods = [m for m in scores if set_name in scores[m] and "id" in scores[m]]
    styles = styles or method_styles(list(scores))
    fig, (lin, log) = plt.subplots(1, 2, figsize=(11.5, 4.6))
    smallest = math.inf
    for method in methods:
        id_s, ood_s = scores[method]["id"], scores[method][set_name]
        fpr, tpr = roc_points(id_s, ood_s, convention)
        mx, my = fpr95_point(id_s, ood_s, convention)
        style = styles[method]
        label = f"{method}  AUROC {100 * auc(fpr, tpr):.1f}  FPR@95 {100 * mx:.1f}"
        for ax in (lin, log):
            ax.plot(fpr, tpr, lw=1.4, label=label if ax is lin else None, **style)
            ax.plot([mx], [my], marker="o", ms=5, color=style["color"], mec="black", mew=0.5)
        positive = fpr[fpr > 0]
        if positive.size:
            smallest = min(smallest, float(positive.min()))
    if convention == "openood":
        xlabel = "FPR: ID samples flagged as OOD"
        ylabel = f"TPR: {set_name} samples caught (OOD positive)"
    else:
        xlabel = f"FPR: {set_name} samples accepted as ID"
        ylabel = "TPR: ID samples accepted (ID positive)"
    for ax in (lin, log):
        ax.axhline(RECALL, color="grey", lw=0.7, ls=(0, (2, 2)))
        ax.set_xlabel(xlabel, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.25)
    lin.plot([0, 1], [0, 1], color="grey", lw=0.7, ls=":")
    lin.set_xlim(0, 1)
    lin.set_title("linear FPR", fontsize=10)
    log.set_xscale("log")
    log.set_xlim(max(min(smallest, 1e-2) / 2, 1e-5), 1)
    log.set_title("log FPR", fontsize=10)
    for ax in (lin, log):
        ax.set_ylim(0, 1.01)
    fig.suptitle(
        f"ROC: ID vs {set_name} ({convention} convention; dot = the table's FPR@95 point)",
        fontsize=11,
    )
    fig.legend(loc="center left", bbox_to_anchor=(0.70, 0.5), fontsize=9, frameon=False)
    fig.subplots_adjust(left=0.06, right=0.69, bottom=0.12, top=0.88, wspace=0.28)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- histograms


def plot_histograms(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    set_name: str,
    path: Path,
    cols: int = 4,
) -> Path:
    """One panel per method: density histograms of ID and ``set_name`` scores, axes labelled;
    the title says when a set has fewer than ``FEW_SAMPLES`` samples."""
    plt = _pyplot()
    methods = [m for m in scores if set_name in scores[m] and "id" in scores[m]]
    cols = max(1, min(cols, len(methods)))
    rows = max(1, math.ceil(len(methods) / cols))
    width, height = 3.3 * cols, 2.75 * rows + 0.8
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    # fixed margins in inches (title 0.55, x label 0.5, y label 0.55, gaps between panels)
    fig.subplots_adjust(
        left=0.55 / width, right=1 - 0.1 / width, top=1 - 0.8 / height,
        bottom=0.5 / height, wspace=0.32, hspace=0.58,
    )  # fmt: skip
    flat = list(axes.flat)
    for ax in flat[len(methods) :]:
        ax.set_visible(False)
    smallest = math.inf
    for ax, method in zip(flat, methods, strict=False):
        id_s = np.asarray(scores[method]["id"], dtype=np.float64)
        ood_s = np.asarray(scores[method][set_name], dtype=np.float64)
        both = np.concatenate([id_s, ood_s])
        both = both[np.isfinite(both)]
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        for values, label, color in ((id_s, "ID", "tab:blue"), (ood_s, set_name, "tab:red")):
            finite = values[np.isfinite(values)]
            density, _ = np.histogram(finite, bins=bins, density=finite.size > 0)
            ax.stairs(density, bins, fill=True, alpha=0.45, color=color, label=label)
        n = min(len(id_s), len(ood_s))
        smallest = min(smallest, n)
        small = f" (n={len(id_s)}/{len(ood_s)})" if n < FEW_SAMPLES else ""
        ax.set_title(method + small, fontsize=10)
        ax.set_xlabel("score (higher = more ID)", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    title = f"Score histograms: ID vs {set_name}"
    if smallest < FEW_SAMPLES:
        title += f" (n = ID/OOD samples where fewer than {FEW_SAMPLES}: noisy)"
    fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- APS grids

_NOT_PARAMS = ("auroc", "fpr95", "criterion", "best")


def _criterion(record: Mapping[str, Any]) -> float:
    """A grid point's criterion value in percent (the search's ``criterion``, else AUROC)."""
    return 100 * float(record.get("criterion", record["auroc"]))


def _grid_parts(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, list]]:
    names = [k for k in records[0] if k not in _NOT_PARAMS]
    values = {n: list(dict.fromkeys(r[n] for r in records)) for n in names}
    return names, values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def label_of(criterion: str) -> str:
    """How a criterion reads on an axis (``fpr95`` is searched as ``-FPR@95``)."""
    return {"auroc": "AUROC", "fpr95": "criterion (-FPR@95)"}.get(criterion, str(criterion))


def edge_warnings(method: str, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences for every parameter whose chosen value is the smallest or largest of its
    (numeric, at least three-valued) grid: the optimum may lie outside the grid."""
    if not records:
        return []
    names, values = _grid_parts(records)
    chosen = next((r for r in records if r.get("best")), None)
    if chosen is None:
        return []
    out = []
    for name in names:
        grid = values[name]
        if len(grid) < 3 or not all(_is_number(v) for v in grid):
            continue
        ordered = sorted(grid)
        value = chosen[name]
        if value in (ordered[0], ordered[-1]):
            side = "smallest" if value == ordered[0] else "largest"
            out.append(
                f"{method}: APS chose {name}={value:g}, the {side} value of its grid "
                f"[{ordered[0]:g} .. {ordered[-1]:g}]; the best value may lie outside the grid "
                "(widen it with grids={...} in shapeood.evaluate)"
            )
    return out


def plot_aps(
    method: str,
    runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
    path: Path,
    criterion: str = "auroc",
) -> Path | None:
    """The APS grid of ``method`` with each point's criterion (validation AUROC, %).

    One parameter: a line per run, the chosen point starred. Two parameters: one heat map per
    run with the values written in the cells and the chosen cell outlined. ``runs`` is
    ``[(label, grid records)]``; returns ``None`` for grids of three or more parameters.
    """
    runs = [(label, list(records)) for label, records in runs if records]
    if not runs:
        return None
    names, _ = _grid_parts(runs[0][1])
    if len(names) not in (1, 2):
        return None
    plt = _pyplot()
    if len(names) == 1:
        name = names[0]
        fig, ax = plt.subplots(figsize=(4.4, 2.9), layout="constrained")
        styles = method_styles([label for label, _ in runs])
        for label, records in runs:
            xs = [r[name] for r in records]
            numeric = all(_is_number(x) for x in xs)
            positions = xs if numeric else list(range(len(xs)))
            ys = [_criterion(r) for r in records]
            ax.plot(positions, ys, marker="o", ms=4, lw=1.3, label=label, **styles[label])
            best = [i for i, r in enumerate(records) if r.get("best")]
            for i in best:
                ax.plot(positions[i], ys[i], marker="*", ms=14, color="crimson", mec="black",
                        mew=0.6, zorder=5)  # fmt: skip
            if not numeric:
                ax.set_xticks(positions, [str(x) for x in xs])
        ax.set_xlabel(name, fontsize=10)
        ax.set_ylabel(f"{label_of(criterion)} ID-val vs OOD-val (%)", fontsize=9)
        ax.set_title(f"APS grid: {method} (star = chosen)", fontsize=11)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.25)
        if len(runs) > 1:
            ax.legend(fontsize=8, frameon=False)
    else:
        first, second = names
        fig, axes = plt.subplots(
            1, len(runs), figsize=(3.4 * len(runs) + 1.0, 3.0), squeeze=False,
            layout="constrained",
        )  # fmt: skip
        image = None
        for ax, (label, records) in zip(axes.flat, runs, strict=True):
            rows = list(dict.fromkeys(r[first] for r in records))
            cols = list(dict.fromkeys(r[second] for r in records))
            grid = np.full((len(rows), len(cols)), np.nan)
            chosen = None
            for r in records:
                i, j = rows.index(r[first]), cols.index(r[second])
                grid[i, j] = _criterion(r)
                if r.get("best"):
                    chosen = (i, j)
            image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
            for (i, j), value in np.ndenumerate(grid):
                if np.isfinite(value):
                    light = value < np.nanmean(grid)
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=9,
                            color="white" if light else "black")  # fmt: skip
            if chosen is not None:
                ax.add_patch(plt.Rectangle((chosen[1] - 0.5, chosen[0] - 0.5), 1, 1,
                                           fill=False, ec="crimson", lw=2.5))  # fmt: skip
            ax.set_xticks(range(len(cols)), [f"{c:g}" if _is_number(c) else str(c) for c in cols])
            ax.set_yticks(range(len(rows)), [f"{c:g}" if _is_number(c) else str(c) for c in rows])
            ax.set_xlabel(second, fontsize=10)
            ax.set_ylabel(first, fontsize=10)
            ax.tick_params(labelsize=9)
            ax.set_title(label if len(runs) > 1 else f"APS grid: {method}", fontsize=10)
        if image is not None:
            fig.colorbar(
                image, ax=list(axes.flat), label=f"{label_of(criterion)} ID-val vs OOD-val (%)"
            )
        if len(runs) > 1:
            fig.suptitle(f"APS grid: {method} (outlined = chosen)", fontsize=11)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
