"""Outputs people read: tables, multi-run aggregation, figures, one HTML page.

``aggregate(tables)`` turns the DataFrames of several ``shapeood.evaluate`` runs into one table
of per-cell means plus ``<metric>_std`` columns (population std, ddof=0), as OpenOOD reports
CIFAR results over three training runs. ``summary_frame`` / ``format_summary`` /
``summary_markdown`` / ``summary_latex`` give one row per method (near/far FPR@95 and AUROC,
best marked). ``write_report(results, out_dir, scores=None)`` writes CSV (OpenOOD layout), JSON,
Markdown, LaTeX, figures and ``report.html``; ``load_results`` reads CSV/JSON back.
"""

from shapeood.aggregation import STD_SUFFIX, aggregate, is_aggregated, metric_columns
from shapeood.report.plots import (
    edge_warnings,
    fpr95_point,
    method_styles,
    plot_aps,
    plot_histograms,
    plot_roc,
    roc_points,
)
from shapeood.report.tables import (
    OPENOOD_COLUMNS,
    best_cells,
    format_summary,
    format_table,
    load_results,
    markdown_table,
    summary_frame,
    summary_latex,
    summary_markdown,
)
from shapeood.report.writer import write_report

__all__ = [
    "OPENOOD_COLUMNS",
    "STD_SUFFIX",
    "aggregate",
    "best_cells",
    "edge_warnings",
    "format_summary",
    "format_table",
    "fpr95_point",
    "is_aggregated",
    "load_results",
    "markdown_table",
    "method_styles",
    "metric_columns",
    "plot_aps",
    "plot_histograms",
    "plot_roc",
    "roc_points",
    "summary_frame",
    "summary_latex",
    "summary_markdown",
    "write_report",
]
