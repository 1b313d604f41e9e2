"""``shapeood list methods|benchmarks|models``: what is available, with defaults."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  shapeood list methods       # every OOD method, its parameters and defaults, APS grid
  shapeood list benchmarks    # built-in benchmarks (OpenOOD v1.5, classic, offline kit)
  shapeood list models        # kit models, architectures and every --model form
"""


def _methods() -> str:
    from shapeood.detectors import list_detectors

    lines = []
    for name, info in list_detectors().items():
        needs = [
            label
            for label, flag in (
                ("fits on ID features", info.requires_fit),
                ("needs ID labels", info.requires_labels),
                ("runs through the model", info.requires_model),
                ("changes predictions", info.changes_logits),
            )
            if flag
        ]
        lines.append(f"{name}: {info.description}")
        params = ", ".join(f"{k}={v!r}" for k, v in info.params.items()) or "none"
        lines.append(f"    parameters: {params}")
        if info.default_sweep:
            lines.append(f"    APS grid:   {info.default_sweep}")
        if info.presets:
            lines.append(f"    presets:    {info.presets}")
        if needs:
            lines.append(f"    notes:      {', '.join(needs)}")
    return "\n".join(lines)


def _benchmarks() -> str:
    from shapeood.data import list_benchmarks

    items = list_benchmarks()
    width = max(len(n) for n in items)
    return "\n".join(f"{name:<{width}}  {text}" for name, text in items.items())


def _models() -> str:
    from shapeood.models import KIT_MODELS, MODEL_FORMS
    from shapeood.models.factory import ARCHITECTURE_NAMES

    width = max(len(n) for n in KIT_MODELS)
    lines = ["pretrained models of the offline kit (--model NAME):"]
    lines += [f"  {name:<{width}}  {kit.description}" for name, kit in KIT_MODELS.items()]
    lines.append("\narchitectures of shapeood (--model NAME --weights FILE, or --arch NAME):")
    lines += [f"  {name}" for name in ARCHITECTURE_NAMES]
    lines.append("\nevery --model form (add --random-weights to run an untrained network):")
    for form, text, example in MODEL_FORMS:
        lines.append(f"  {form:<32}{text}")
        lines.append(f"  {'':<32}e.g. --model {example}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print({"methods": _methods, "benchmarks": _benchmarks, "models": _models}[args.what]())
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list methods, benchmarks or models",
        description="List OOD methods (parameters, defaults, APS grids), built-in benchmarks "
        "or the pretrained models of the offline kit.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=("methods", "benchmarks", "models"))
    parser.set_defaults(func=run)
