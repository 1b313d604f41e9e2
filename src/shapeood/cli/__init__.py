"""The ``shapeood`` command.

Every module of this package that defines ``register(subparsers)`` contributes one
sub-command; ``register`` adds its parser and sets ``func(args) -> int`` as a default.

Errors are mapped in one place (:func:`error_message`): anything a user can cause prints one
line, ``shapeood: error: <what and the fix>``, and exits with 2 (usage or input errors) or 1
(anything unexpected, which also says how to see more). ``--debug`` or ``SHAPEOOD_DEBUG=1``
prints the traceback too. Warnings print as one line, ``shapeood: warning: <message>``.
"""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import os
import pkgutil
import sys
import warnings
from collections.abc import Sequence

from shapeood.cli._options import add_options, apply_options, ensure_common


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
    for name, command in sub.choices.items():
        ensure_common(command)  # --quiet and --debug everywhere
        if name in IMAGE_COMMANDS and not _has_dest(command, "skip_bad"):
            add_options(command, "skip_bad")
        if name in EXTRACTING_COMMANDS and not _has_dest(command, "no_recompute"):
            command.add_argument(
                "--no-recompute",
                dest="no_recompute",
                action="store_true",
                help="stop with an error on a corrupt cache entry instead of recomputing it",
            )
    return parser


IMAGE_COMMANDS = ("eval", "demo", "extract", "fit-detector", "predict", "train")
EXTRACTING_COMMANDS = ("eval", "demo", "extract", "fit-detector")


def _has_dest(parser: argparse.ArgumentParser, dest: str) -> bool:
    return any(action.dest == dest for action in parser._actions)


def _apply_trust_options(args: argparse.Namespace) -> None:
    """``--skip-bad`` and ``--no-recompute`` become process-wide defaults of the API."""
    if getattr(args, "skip_bad", False):
        from shapeood.data import sources

        sources.set_skip_bad_default(True)
    if getattr(args, "no_recompute", False):
        from shapeood.features import cache

        cache.set_recompute_default(False)


def _reset_trust_options() -> None:
    """Undo ``_apply_trust_options`` (``main`` may run several times in one process)."""
    sources = sys.modules.get("shapeood.data.sources")
    if sources is not None:
        sources.set_skip_bad_default(False)
    cache = sys.modules.get("shapeood.features.cache")
    if cache is not None:
        cache.set_recompute_default(True)


def _debug_requested(argv: Sequence[str] | None) -> bool:
    words = sys.argv[1:] if argv is None else [*argv]  # (the "list" command shadows list)
    return "--debug" in words or os.environ.get("SHAPEOOD_DEBUG", "").strip() not in ("", "0")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_message(err: BaseException) -> tuple[str, int]:
    """``(message, exit code)`` for an exception reaching the command line."""
    from shapeood.errors import DiskError, ShapeoodError, disk_error

    if isinstance(err, ShapeoodError):
        return _one_line(str(err)), 2
    if isinstance(err, OSError):
        where = err.filename or ""
        if err.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT):
            mapped = disk_error(err, where or ".")
            if isinstance(mapped, DiskError):
                return _one_line(str(mapped)), 2
        if isinstance(err, FileNotFoundError):
            text = str(err) if not err.filename else f"file or folder not found: {where}"
            return _one_line(text), 2
        if isinstance(err, IsADirectoryError):
            return f"{where} is a folder, expected a file", 2
        if isinstance(err, NotADirectoryError):
            return f"{where} is not a folder", 2
        return _one_line(f"{err.strerror or err}{': ' + str(where) if where else ''}"), 2
    if isinstance(err, ValueError):
        return _one_line(str(err)), 2
    text = str(err)
    if "CUDA" in text or "cuda" in text:
        return (
            "CUDA is not available on this machine (or the GPU failed): use --device cpu or "
            f"--device auto ({_one_line(text)[:160]})",
            2,
        )
    return (
        f"unexpected {type(err).__name__}: {_one_line(text)[:300]} (run again with --debug "
        "for the traceback)",
        1,
    )


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"shapeood: warning: {_one_line(str(message))}\n"


def _check_device(args: argparse.Namespace) -> None:
    """``--device cuda`` (or ``cuda:N``, ``mps``) on a machine without it: one clear error."""
    from shapeood.errors import DeviceError

    device = str(getattr(args, "device", "") or "").lower()
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {device}: no CUDA GPU is available here; use --device cpu or "
                "--device auto (CUDA when available, else CPU)"
            )
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s); use cuda:0 or --device auto"
            )
    elif device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise DeviceError("--device mps: MPS is not available here; use --device cpu or auto")


def _import_torch_frozen() -> None:
    """Import torch, which every command uses, with the cyclic garbage collector paused, then
    freeze what exists (``gc.freeze``): later collections never scan it again.

    torch's import creates several hundred thousand objects that live as long as the process.
    Collected as they arrive, they cost repeated full collections over an ever larger heap,
    and each later full collection scans them all again: 0.46 s of a 3.4 s warm ``eval`` on a
    2-core CPU. Cycles created afterwards are collected as usual.
    """
    if "torch" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    debug = _debug_requested(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    debug = debug or bool(getattr(args, "debug", False))
    previous_format = warnings.formatwarning
    if not debug:
        warnings.formatwarning = _format_warning
    try:
        _import_torch_frozen()
        _check_device(args)
        _apply_trust_options(args)
        apply_options(args)  # --quiet switch, --device auto resolved
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
    except Exception as err:  # every failure becomes one line (the traceback with --debug)
        if debug:
            import traceback

            traceback.print_exc()
        message, code = error_message(err)
        print(f"shapeood: error: {message}", file=sys.stderr)
        return code
    finally:
        warnings.formatwarning = previous_format
        _reset_trust_options()


def entry() -> None:
    """The ``shapeood`` program: :func:`main`, then a fast exit with its status.

    By the time ``main`` returns, every file the command wrote is closed (and fsynced where it
    matters) and its DataLoader workers are joined, so the interpreter's teardown adds only
    time: after torch is loaded it took about 1 s of a 3.4 s warm ``eval`` on a 2-core CPU.
    The streams are flushed and the process leaves with ``os._exit``; inside a
    ``torch.distributed`` run it exits normally, so that the process group shuts down cleanly.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a closed pipe or stream: nothing more to say
        pass
    torch = sys.modules.get("torch")
    if (
        torch is not None
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    ):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    entry()
