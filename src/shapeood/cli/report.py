"""``shapeood report RUN [RUN ...] --out DIR``: re-render one run, or aggregate several."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """\
RUN is a results.json / results.csv or the folder 'shapeood eval --out' wrote. With several
RUNs every cell is aggregated over them (mean and population std, ddof=0, as OpenOOD's
tables over three training runs); the per-run tables go to DIR/per_run/.
Without --scores, a scores.npz next to the (first) RUN is used when present (plots need it).

examples:
  shapeood report runs/demo/results.json --out runs/demo_again
  shapeood report runs/demo/results.csv --scores runs/demo/scores.npz --out /tmp/page
  shapeood report runs/seed0/ runs/seed1/ runs/seed2/ --out runs/agg   # mean ± std
"""


def _results_path(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        for name in ("results.json", "results.csv"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(
            f"no results.json or results.csv in {path}: give a folder written by "
            "'shapeood eval --out' or a results file"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}: give a results.csv or results.json")
    return path


def _label(path: Path, others: list[Path]) -> str:
    """The run's folder name (its file name when several runs share a folder)."""
    folders = [p.parent for p in others]
    if folders.count(path.parent) > 1:
        return path.stem
    return path.parent.name or path.stem


def run(args: argparse.Namespace) -> int:
    from shapeood.report import aggregate, format_summary, load_results, write_report

    paths = [_results_path(text) for text in args.results]
    tables = [load_results(path) for path in paths]
    scores = args.scores
    if scores is None and (paths[0].parent / "scores.npz").is_file():
        scores = paths[0].parent / "scores.npz"
    if scores is not None and not Path(scores).is_file():
        raise FileNotFoundError(
            f"no score file at {scores}: give --scores PATH.npz or leave it out"
        )
    if len(tables) == 1:
        df, runs = tables[0], None
    else:
        labels = [_label(p, paths) for p in paths]
        if len(set(labels)) != len(labels):
            labels = [f"run{i + 1}" for i in range(len(paths))]
        df, runs = aggregate(tables, labels=labels), tables
    written = write_report(df, args.out, scores=scores, title=args.title, runs=runs)
    print(format_summary(df))
    choices = [(r["label"], r.get("aps_choices") or {}) for r in df.attrs.get("runs", [])]
    if not choices:
        choices = [("this run", df.attrs.get("aps_choices") or {})]
    if any(c for _, c in choices):
        print("\nAPS choices per run:")
        for label, chosen in choices:
            print(f"  {label}: " + "; ".join(f"{m} {p}" for m, p in chosen.items()))
    print(f"\nreport: {written['html']}  (also results.csv, results.md, results.tex)")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="re-render a report from saved results, or aggregate several runs (mean ± std)",
        description="Re-render a report (CSV, JSON, Markdown, LaTeX, plots, one HTML page) from "
        "the results that 'shapeood eval --out' or 'shapeood demo' wrote; with several runs, "
        "aggregate them (mean ± population std per cell).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "results", metavar="RUN", nargs="+",
        help="results.csv, results.json or a run folder holding one (several: aggregate)",
    )  # fmt: skip
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--scores", metavar="NPZ", help="per-sample scores for the plots")
    parser.add_argument("--title", help="page title")
    parser.set_defaults(func=run)
