"""The flags several sub-commands share, defined once: same name, meaning and default everywhere.

A sub-command adds the ones it uses::

    from shapeood.cli._options import add_options
    add_options(parser, "device", "batch_size", "workers", "cache_dir", "data_root")

``main`` then calls ``apply_options(args)`` after parsing: ``--quiet`` silences
``shapeood.progress`` for the whole process and ``--device auto`` is resolved (CUDA when
available, else CPU) and said in the first progress line. Helpers below turn the parsed values
into what the Python API takes (``cache_arg``). ``--quiet`` and ``--debug`` are added to every
sub-command by ``ensure_common``. This module imports nothing heavy.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


DEFAULT_BATCH_SIZE = 256

OPTIONS: dict[str, Option] = {
    "device": Option(
        ("--device",),
        {
            "default": "auto",
            "metavar": "DEV",
            "help": "auto (CUDA when available, else CPU), cpu, cuda, cuda:1 or mps "
            "(default auto; the first progress line says which)",
        },
    ),
    "quiet": Option(
        ("--quiet", "-q"),
        {"action": "store_true", "default": False, "help": "no progress bars or stage lines"},
    ),
    "debug": Option(
        ("--debug",),
        {"action": "store_true", "default": False, "help": "on an error, show the traceback"},
    ),
    "cache_dir": Option(
        ("--cache-dir",),
        {
            "metavar": "DIR",
            "help": "feature cache folder (default $SHAPEOOD_CACHE/features, "
            "~/.cache/shapeood/features when unset)",
        },
    ),
    "data_root": Option(
        ("--data-root",),
        {
            "metavar": "DIR",
            "help": "folder that relative dataset paths start from (default $SHAPEOOD_DATA, "
            "the offline kit)",
        },
    ),
    "batch_size": Option(
        ("--batch-size",),
        {
            "type": _positive_int,
            "default": DEFAULT_BATCH_SIZE,
            "metavar": "N",
            "help": f"images per forward pass (default {DEFAULT_BATCH_SIZE})",
        },
    ),
    "workers": Option(
        ("--workers",),
        {
            "type": _non_negative_int,
            "default": None,
            "metavar": "N",
            "help": "DataLoader worker processes that decode images (default: min(8, cores - 1) "
            "for image files, 0 for in-memory arrays; 0 decodes in the main process)",
        },
    ),
    "max_samples": Option(
        ("--max-samples",),
        {
            "type": _positive_int,
            "metavar": "N",
            "help": "use at most N evenly spaced images of every dataset (default: every image)",
        },
    ),
    "odin_max_samples": Option(
        ("--odin-max-samples",),
        {
            "type": _positive_int,
            "metavar": "N",
            "help": "at most N evenly spaced images per set for ODIN, which runs through the "
            "model (default: as --max-samples)",
        },
    ),
    "skip_bad": Option(
        ("--skip-bad",),
        {
            "action": "store_true",
            "default": False,
            "help": "skip unreadable images (listed in a warning) instead of stopping",
        },
    ),
}

COMMON = ("quiet", "debug")

MODEL_HELP = (
    "kit name ('shapeood list models'), torchvision:NAME, timm:NAME, an architecture name, "
    "a checkpoint file (.pth .pt .safetensors .npz), python:MODULE:FUNCTION or FILE.py:FUNCTION"
)


def add_model_options(
    parser: argparse.ArgumentParser, required: bool = True, repeatable: bool = False
) -> None:
    """``--model`` and what qualifies it, as ``shapeood.models.load_model`` takes them.

    ``repeatable``: ``--model`` / ``--weights`` may be repeated (several runs, ``eval``); the
    values are then lists.
    """
    group = parser.add_argument_group("model (see 'shapeood list models')")
    more = "; repeat for several runs (aggregated: mean ± std per cell)" if repeatable else ""
    action = "append" if repeatable else "store"
    group.add_argument(
        "--model", required=required, metavar="SPEC", help=MODEL_HELP + more, action=action
    )
    group.add_argument(
        "--weights", metavar="FILE|NAME", action=action,
        help="weights for --model: a checkpoint file, or DEFAULT / a torchvision enum name "
        "(IMAGENET1K_V2) for torchvision:/timm: models"
        + ("; repeat (one per --model, or several for one --model)" if repeatable else ""),
    )  # fmt: skip
    group.add_argument(
        "--arch", metavar="NAME",
        help="what a checkpoint file holds: an architecture name, torchvision:NAME, timm:NAME "
        "or python:MODULE:FUNCTION",
    )  # fmt: skip
    group.add_argument(
        "--num-classes", type=_positive_int, metavar="N",
        help="classes of the head (default: the checkpoint's, else the architecture's)",
    )  # fmt: skip
    group.add_argument(
        "--trust-pickle", action="store_true",
        help="allow a whole pickled model; unpickling runs code from the file, so only for "
        "files you trust",
    )  # fmt: skip
    group.add_argument(
        "--random-weights", action="store_true",
        help="allow a network without weights (untrained), e.g. for a smoke test",
    )  # fmt: skip


def model_from_args(
    args: argparse.Namespace, spec: Any = None, weights: Any = None, training: bool = False
) -> Any:
    """``shapeood.models.load_model`` on ``--model`` and its qualifiers.

    ``training``: the network is about to be trained, so no weights means a random start (said
    in a stage line) rather than an error.
    """
    from shapeood import progress
    from shapeood.models import load_model

    random_ok = bool(getattr(args, "random_weights", False))
    if training and not random_ok:
        try:
            return model_from_args(args, spec, weights)
        except ValueError as err:
            if "--random-weights" not in str(err):
                raise
        progress.stage("no --weights: training starts from a random initialisation")
        random_ok = True
    return load_model(
        spec if spec is not None else args.model,
        weights=weights if weights is not None else args.weights,
        arch=getattr(args, "arch", None),
        num_classes=getattr(args, "num_classes", None),
        trust_pickle=bool(getattr(args, "trust_pickle", False)),
        random_weights=random_ok,
    )


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *names: str,
    help: dict[str, str] | None = None,
    aliases: dict[str, tuple[str, ...]] | None = None,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Add the shared options ``names`` (keys of ``OPTIONS``) to ``parser``.

    ``help`` replaces the help text of an option where a command must say more (e.g. what
    no ``--max-samples`` means in ``demo``); ``aliases`` adds older spellings of a flag;
    ``defaults`` is only for a command whose own config supplies the value when the flag is
    absent (``train``: the recipe's workers). Name, meaning and type stay the shared ones.
    """
    for name in names:
        if name not in OPTIONS:
            raise KeyError(f"unknown shared option {name!r}; known: {', '.join(OPTIONS)}")
        option = OPTIONS[name]
        kwargs = dict(option.kwargs)
        if help and name in help:
            kwargs["help"] = help[name]
        if defaults and name in defaults:
            kwargs["default"] = defaults[name]
        flags = option.flags + tuple((aliases or {}).get(name, ()))
        parser.add_argument(*flags, dest=name, **kwargs)


def _has_dest(parser: argparse.ArgumentParser, dest: str) -> bool:
    return any(action.dest == dest for action in parser._actions)


def ensure_common(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` (one sub-command) ``--quiet`` and ``--debug`` when it lacks them."""
    for name in COMMON:
        if not _has_dest(parser, name):
            add_options(parser, name)


def resolve_device(device: str | None) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other names pass through.

    >>> resolve_device("cpu")
    'cpu'
    """
    text = "auto" if device is None else str(device).strip().lower()
    if text != "auto":
        return text
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def apply_options(args: argparse.Namespace) -> None:
    """Act on the shared options after parsing: quiet switch, ``--device auto`` resolved."""
    from shapeood import progress

    progress.set_quiet(bool(getattr(args, "quiet", False)))
    if getattr(args, "device", None) is not None:
        asked = args.device
        args.device = resolve_device(asked)
        how = "auto: " if str(asked).lower() == "auto" else ""
        if how and args.device == "cpu":
            why = "auto: no CUDA device available"
        elif how:
            why = "auto: CUDA available"
        else:
            why = "--device"
        progress.stage(f"device {args.device} ({why})")


def cache_arg(args: argparse.Namespace) -> Any:
    """The ``cache=`` argument of the Python API from ``--cache-dir`` / ``--no-cache``."""
    if getattr(args, "no_cache", False):
        return False
    folder = getattr(args, "cache_dir", None)
    if folder:
        from shapeood.features import FeatureCache

        return FeatureCache(folder)
    return True
