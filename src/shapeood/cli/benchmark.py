"""``shapeood benchmark check FILE`` and ``shapeood benchmark template``: your own benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shapeood.cli._options import add_options

DESCRIPTION = """\
Your own benchmark, as a YAML or TOML file: which sets are ID (test, val, train), which are
near- or far-OOD, and how images are preprocessed. Reference with every key:
docs/benchmarks.md.

  check FILE   validate the file (unknown keys, types, crop <= resize), list every set with
               its role, kind, size and resolved path, and what is missing; runs no network
  template     print a commented starting file
"""

EPILOG = """\
examples:
  shapeood benchmark template > my_benchmark.yaml
  shapeood benchmark check my_benchmark.yaml
  shapeood benchmark check examples/cifar10_kit.yaml
  shapeood eval --benchmark my_benchmark.yaml --model resnet20_cifar10 --methods energy,ash_s
"""

NEEDS = {
    "id_val": "--aps and the ReAct/LHAct fit (else fitted on id.train)",
    "ood_val": "--aps (with id.val)",
    "id_train": "DICE/HIMPLoS prototypes (else fitted on id.val)",
}


def _root_origin(file: Path, data_root: str | None) -> str:
    from shapeood.data.benchmarks.files import _read_mapping

    data = _read_mapping(file)
    if data.get("data_root"):
        return "data_root in the file"
    return "--data-root" if data_root else "the file's folder"


def _check(args: argparse.Namespace) -> int:
    from shapeood.data.benchmarks.files import _infer_num_classes, inspect_benchmark_file

    file = Path(args.file).expanduser()
    spec, root, reports = inspect_benchmark_file(file, args.data_root)
    classes = f"{spec.num_classes} classes"
    id_test = next(r for r in reports if r.role == "id_test")
    if spec.num_classes <= 0 and not id_test.missing:
        classes = f"{_infer_num_classes(spec, root)} classes (from the id.test labels)"
    elif spec.num_classes <= 0:
        classes = "classes unknown (id.test is missing)"
    print(
        f"benchmark {spec.name}: family {spec.family}, protocol {spec.protocol}, "
        f"FPR@95 {spec.fpr_convention}, resize {spec.resize}, crop {spec.crop}, {classes}"
    )
    if spec.description:
        print(f"  {spec.description}")
    print(f"paths start from {root} ({_root_origin(file, args.data_root)})\n")
    rows = [("key", "role", "kind", "images", "status", "location")]
    for r in reports:
        status = "missing" if r.missing else ("problem" if r.problem else "ok")
        size = "?" if r.size is None else str(r.size)
        rows.append((r.key, r.role, r.kind, size, status, r.location))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))
    missing = list(dict.fromkeys(m for r in reports for m in r.missing))
    problems = [f"{r.key}: {r.problem}" for r in reports if r.problem]
    print()
    declared = {r.role for r in reports}
    for role, what in NEEDS.items():
        if role not in declared:
            key = {"id_val": "id.val", "ood_val": "ood.val", "id_train": "id.train"}[role]
            print(f"not declared: {key}, used for {what}")
    for text in problems:
        print(f"problem: {text}")
    if missing:
        print(f"missing ({len(missing)}):")
        for text in missing:
            print(f"  {text}")
        print("fix the paths above (relative ones start from the folder shown), or set "
              "data_root in the file / --data-root")  # fmt: skip
        return 1
    if problems:
        return 1
    print(f"ok: run shapeood eval --benchmark {args.file} --model MODEL")
    return 0


def _template(args: argparse.Namespace) -> int:
    from shapeood.data.benchmarks.files import TEMPLATE

    print(TEMPLATE, end="")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"check": _check, "template": _template}[args.action](args)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="check your own benchmark file, or print a template",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="validate a file and list its sets, sizes, roles and what is missing",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    check.add_argument("file", metavar="FILE", help="a .yaml, .yml or .toml benchmark file")
    add_options(check, "data_root")
    actions.add_parser(
        "template", help="print a commented starting file",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.set_defaults(func=run)
