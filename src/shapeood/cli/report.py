"""``shapeood report RESULTS --out DIR``: re-render a report from saved results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """\
Without --scores, a scores.npz next to RESULTS is used when present (plots need it).

examples:
  shapeood report runs/demo/results.json --out runs/demo_again
  shapeood report runs/demo/results.csv --scores runs/demo/scores.npz --out /tmp/page
"""


def run(args: argparse.Namespace) -> int:
    from shapeood.report import format_table, load_results, write_report

    results = Path(args.results)
    df = load_results(results)
    scores = args.scores
    if scores is None and (results.parent / "scores.npz").is_file():
        scores = results.parent / "scores.npz"
    if scores is not None and not Path(scores).is_file():
        raise FileNotFoundError(
            f"no score file at {scores}: give --scores PATH.npz or leave it out"
        )
    written = write_report(df, args.out, scores=scores, title=args.title)
    print(format_table(df))
    print(f"\nreport: {written['html']}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="re-render CSV/JSON/Markdown/HTML from saved results",
        description="Re-render a report (CSV, JSON, Markdown, plots, one HTML page) from the "
        "results.csv or results.json that 'shapeood eval --out' or 'shapeood demo' wrote.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results", metavar="RESULTS", help="results.csv or results.json")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--scores", metavar="NPZ", help="per-sample scores for the plots")
    parser.add_argument("--title", help="page title")
    parser.set_defaults(func=run)
