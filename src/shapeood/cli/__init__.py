"""The ``shapeood`` command.

Every module of this package that defines ``register(subparsers)`` contributes one
sub-command; ``register`` adds its parser and sets ``func(args) -> int`` as a default.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from shapeood.cli._options import apply_options, ensure_common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shapeood",
        description="Out-of-distribution detection by activation shaping for any PyTorch "
        "classifier: extract features once, then evaluate every method on the cache.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'shapeood COMMAND --help' for the options of one command. "
        "Start with 'shapeood demo' (offline, a few minutes on a laptop CPU).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # __main__ and private helpers
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    for command in sub.choices.values():
        ensure_common(command)  # --quiet and --debug everywhere
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    apply_options(args)  # --quiet switch, --device auto resolved
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # Output piped into a reader that closed early (``shapeood list methods | head``).
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is kept in the cache; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"shapeood: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
