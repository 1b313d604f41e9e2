"""``shapeood cache list|clear``: what the feature cache holds, and removing it."""

from __future__ import annotations

import argparse
from typing import Any

from shapeood.cli._options import add_options

EPILOG = """\
examples:
  shapeood cache list
  shapeood cache list --cache-dir /tmp/features
  shapeood cache clear resnet20_cifar10      # entries whose key starts with this
  shapeood cache clear --all
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list or clear cached features",
        description="List or clear the feature cache ($SHAPEOOD_CACHE/features by default).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, "cache_dir", aliases={"cache_dir": ("--dir",)})
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="one line per cached feature set")
    clear = actions.add_parser("clear", help="remove cached feature sets")
    which = clear.add_mutually_exclusive_group(required=True)
    which.add_argument("key", nargs="?", help="remove the entries whose key starts with KEY")
    which.add_argument("--all", action="store_true", help="remove every entry")
    parser.set_defaults(func=run)


def human_size(n: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def run(args: argparse.Namespace) -> int:
    from shapeood.features import FeatureCache

    cache = FeatureCache(args.cache_dir)
    if args.action == "list":
        entries = cache.list()
        if not entries:
            print(f"the cache at {cache.root} is empty")
            return 0
        rows = [("key", "model", "dataset", "N", "D", "size", "state")]
        for e in entries:
            state = "complete" if e.complete else f"partial {e.chunks_done}/{e.chunks_total}"
            rows.append(
                (e.key, e.model, e.dataset, str(e.num_samples), str(e.dim or "?"),
                 human_size(e.size_bytes), state)
            )  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        total = sum(e.size_bytes for e in entries)
        print(f"{len(entries)} entries, {human_size(total)} in {cache.root}")
        return 0
    removed = cache.clear(None if args.all else args.key)
    if not removed and not args.all:
        print(f"no cache entry starts with {args.key!r} in {cache.root}")
        return 1
    for key in removed:
        print(f"removed {key}")
    print(f"{len(removed)} entries removed from {cache.root}")
    return 0
