"""``shapeood cache list|clear``: what the cache holds, and removing it (never by accident)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shapeood.cli._options import add_options, ensure_common

EPILOG = """\
A KEY (or key prefix) that matches several entries, or a blank one, removes nothing: the
command lists what it would have removed. --all is the only way to clear everything.

examples:
  shapeood cache list
  shapeood cache list --cache-dir /tmp/features
  shapeood cache clear resnet20_cifar10__3f2a     # the one entry whose key starts with this
  shapeood cache clear KEY1 KEY2                   # several entries, each named
  shapeood cache clear --all --kind odin           # every ODIN score entry
  shapeood cache clear --all                       # everything
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list or clear cached features (and ODIN scores)",
        description="List or clear the cache ($SHAPEOOD_CACHE/features by default): extracted "
        "features and input-perturbation (ODIN) scores, one entry per content key.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, "cache_dir", aliases={"cache_dir": ("--dir",)})
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="one line per entry: key, kind, model, names used, rows, size, state"
    )
    listing.add_argument("--kind", help="only entries of this kind (features, odin)")
    clear = actions.add_parser(
        "clear",
        help="remove entries by key (each must match exactly one) or all with --all",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    clear.add_argument("keys", nargs="*", metavar="KEY", help="key or unique key prefix")
    clear.add_argument("--all", action="store_true", help="remove every entry (of --kind)")
    clear.add_argument("--kind", help="with --all: only entries of this kind (features, odin)")
    for sub in (listing, clear):
        ensure_common(sub)
    parser.set_defaults(func=run)


def human_size(n: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _list(cache: Any, kind: str | None) -> int:
    entries = cache.list(kind=kind)
    if not entries:
        what = f"no {kind} entries" if kind else "empty"
        print(f"the cache at {cache.root} is {what}" if not kind else f"{what} in {cache.root}")
        return 0
    rows = [("key", "kind", "model", "names", "N", "D", "size", "state")]
    for e in entries:
        if e.state == "partial":
            state = f"partial {e.chunks_done}/{e.chunks_total}"
        elif e.state == "corrupt":
            state = f"corrupt: {e.problem}"
        else:
            state = "complete"
        names = ",".join(e.names) if e.names else e.dataset
        rows.append(
            (e.key, e.kind, e.model, names, str(e.num_samples or "?"), str(e.dim or "?"),
             human_size(e.size_bytes), state)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    total = sum(e.size_bytes for e in entries)
    corrupt = sum(e.state == "corrupt" for e in entries)
    tail = f" ({corrupt} corrupt: clear them or let the next run recompute them)" if corrupt else ""
    print(f"{len(entries)} entries, {human_size(total)} in {cache.root}{tail}")
    return 0


def _refuse(message: str, keys: list[str]) -> int:
    print(f"shapeood: error: {message}", file=sys.stderr)
    for key in keys:
        print(f"  would remove {key}", file=sys.stderr)
    return 2


def _clear(cache: Any, args: argparse.Namespace) -> int:
    if args.all:
        if args.keys:
            return _refuse("give either KEY(s) or --all, not both; nothing removed", [])
        removed = cache.clear(None, kind=args.kind)
    else:
        if args.kind:
            return _refuse("--kind selects entries for --all; with keys, name them", [])
        if not args.keys:
            return _refuse(
                "name the entry to remove (see 'shapeood cache list') or pass --all; "
                "nothing removed",
                [],
            )
        chosen: list[str] = []
        for key in args.keys:
            if not key.strip():
                return _refuse(
                    f"refusing the blank key {key!r}: it would match every entry; nothing "
                    "removed (use --all to clear everything)",
                    cache.keys(),
                )
            matches = [key] if key in cache.keys() else cache.matching(key)
            if not matches:
                print(
                    f"shapeood: error: no cache entry starts with {key!r} in {cache.root}; "
                    "nothing removed ('shapeood cache list' shows the keys)",
                    file=sys.stderr,
                )
                return 1
            if len(matches) > 1:
                return _refuse(
                    f"{key!r} matches {len(matches)} entries; nothing removed: name each key "
                    "(shapeood cache clear KEY1 KEY2 ...) or use --all",
                    matches,
                )
            chosen.extend(m for m in matches if m not in chosen)
        removed = []
        for key in chosen:
            cache.remove(key)
            removed.append(key)
    for key in removed:
        print(f"removed {key}")
    print(f"{len(removed)} entries removed from {cache.root}")
    return 0


def run(args: argparse.Namespace) -> int:
    from shapeood.features import FeatureCache

    cache = FeatureCache(args.cache_dir)
    if args.action == "list":
        return _list(cache, args.kind)
    return _clear(cache, args)
