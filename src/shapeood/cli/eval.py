"""``shapeood eval``: run OOD detectors of a model on a benchmark and write a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from shapeood._types import CRITERIA
from shapeood.cli._options import add_model_options, add_options, cache_arg, model_from_args

EPILOG = """\
Features are extracted once per dataset and cached ($SHAPEOOD_CACHE, see 'shapeood cache'),
so a second run with other methods or parameters does not touch the network (ODIN aside: it
perturbs inputs and runs through the model; its scores are cached too).
Methods and their parameters: 'shapeood list methods'; benchmarks: 'shapeood list benchmarks'.

examples:
  shapeood eval --benchmark cifar10_offline --model resnet20_cifar10 --methods energy,ash_s,scale
  shapeood eval --benchmark cifar10_offline --model densenet100_cifar10 --aps --out runs/dn100
  shapeood eval --benchmark cifar10 --data-root /data/openood --model resnet18_32x32 \\
      --weights ckpt.pth --methods all --aps --device cuda --out runs/c10
  shapeood eval --benchmark my_benchmark.yaml --model torchvision:resnet50 --weights DEFAULT \\
      --param react.percentile=95 --param ash_s.percentile=90
  shapeood eval --benchmark cifar10_offline --model resnet20_cifar10 --model resnet32_cifar10 \\
      --model resnet56_cifar10 --methods energy,scale --out runs/three   # mean ± std
  shapeood eval --benchmark cifar10_offline --model resnet20_cifar10 --weights s0/model.pt \\
      --weights s1/model.pt --weights s2/model.pt --methods scale --out runs/seeds
"""


def parse_param(text: str) -> tuple[str, str, Any]:
    """``"react.percentile=95"`` -> ``("react", "percentile", 95)`` (value read as YAML)."""
    import yaml

    target, sep, raw = text.partition("=")
    method, dot, key = target.partition(".")
    if not sep or not dot or not method or not key:
        raise ValueError(
            f"--param {text!r}: write METHOD.PARAM=VALUE, e.g. --param react.percentile=95"
        )
    value = yaml.safe_load(raw)
    if isinstance(value, str) and value.strip().endswith("%"):  # "0.85%": percent on purpose
        from shapeood._validation import percent

        try:
            value = percent(float(value.strip()[:-1]))
        except ValueError:
            pass
    return method.strip(), key.strip(), value


def collect_params(items: list[str] | None) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for item in items or []:
        method, key, value = parse_param(item)
        params.setdefault(method, {})[key] = value
    return params


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``eval`` and ``demo`` (the shared vocabulary of ``cli._options``)."""
    add_options(
        parser, "data_root", "device", "batch_size", "workers", "cache_dir", "skip_bad", "quiet",
        "debug",
    )  # fmt: skip
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write the feature cache"
    )
    parser.add_argument(
        "--per-set", action="store_true",
        help="print every (method, OOD set) row, not only the one-row-per-method summary",
    )  # fmt: skip


def run_and_report(
    args: argparse.Namespace,
    *,
    model: Any,
    benchmark: Any,
    methods: str,
    aps: bool,
    out: str | None,
    weights: Any = None,
    params: dict | None = None,
    fpr_convention: str | None = None,
    max_samples: Any = None,
    odin_max_samples: int | None = None,
    grids: dict | None = None,
    title: str | None = None,
    aps_criterion: str = "auroc",
    fsood: bool = False,
) -> int:
    """Evaluate, print the table and the APS choices, write the report when ``out`` is set."""
    from shapeood import progress
    from shapeood.evaluation import evaluate
    from shapeood.report import format_summary, format_table, write_report

    started = time.perf_counter()
    df = evaluate(
        model,
        benchmark,
        methods=methods,
        aps=aps,
        fpr_convention=fpr_convention,
        device=args.device,
        batch_size=args.batch_size,
        cache=cache_arg(args),
        progress=not args.quiet,
        num_workers=args.workers,
        params=params,
        weights=weights,
        data_root=args.data_root,
        max_samples=max_samples,
        odin_max_samples=odin_max_samples,
        grids=grids,
        criterion=aps_criterion,
        fsood=fsood,
    )
    scores = df.scores
    print(format_table(df) if getattr(args, "per_set", False) else format_summary(df))
    runs = df.attrs.get("runs") or [{"label": "", "aps_choices": df.attrs.get("aps_choices")}]
    if any(run.get("aps_choices") for run in runs):
        print(f"\nAPS choices (best {aps_criterion} of ID-val vs OOD-val):")
        for run in runs:
            if run["label"]:
                print(f"  {run['label']}:")
            for method, chosen in (run.get("aps_choices") or {}).items():
                print(f"  {method:<10} {chosen}")
    for note in df.attrs.get("notes", []):
        print(f"note: {note}")
    if out:
        from shapeood.evaluation import save_score_file

        out_dir = Path(out)
        progress.stage(f"report: writing {out_dir}")
        per_run = zip(df.attrs.get("run_labels", []), df.attrs.get("run_scores", []), strict=True)
        for label, run_scores in per_run:  # several runs: all scores kept, plots from the first
            save_score_file(out_dir / "scores" / f"{label}.npz", run_scores)
        written = write_report(df, out_dir, scores=scores, title=title)
        save_score_file(out_dir / "scores.npz", scores)
        print(f"\nreport: {written['html']}  (also results.csv, results.json, results.md)")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _models_and_weights(args: argparse.Namespace) -> tuple[Any, Any]:
    """One run, or several (``--model`` and/or ``--weights`` repeated)."""
    models, weights = list(args.model), list(args.weights or [])
    if len(models) == 1 and len(weights) <= 1:
        return models[0], (weights[0] if weights else None)
    if len(models) > 1 and len(weights) not in (0, len(models)):
        raise ValueError(
            f"--model given {len(models)} times and --weights {len(weights)} times: give one "
            "--weights per --model, or one --model with several --weights"
        )
    return models, (weights or None)


def run(args: argparse.Namespace) -> int:
    model, weights = _models_and_weights(args)
    qualified = [f for f in ("arch", "num_classes", "trust_pickle", "random_weights")
                 if getattr(args, f, None)]  # fmt: skip
    if isinstance(model, list) or isinstance(weights, list):
        if qualified:
            raise ValueError(
                f"--{qualified[0].replace('_', '-')} applies to one run: evaluate one --model at "
                "a time, or give kit names / torchvision:NAME / checkpoint files for several runs"
            )
    else:
        model, weights = model_from_args(args, spec=model, weights=weights), None
    return run_and_report(
        args,
        model=model,
        benchmark=args.benchmark,
        methods=args.methods,
        aps=args.aps,
        out=args.out,
        weights=weights,
        params=collect_params(args.param),
        fpr_convention=args.fpr_convention,
        max_samples=args.max_samples,
        odin_max_samples=args.odin_max_samples,
        aps_criterion=args.aps_criterion,
        fsood=args.fsood,
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate OOD methods of a model on a benchmark",
        description="Evaluate OOD detectors of a classifier on a benchmark (OpenOOD v1.5 "
        "layout: one row per OOD set plus near/far means, metrics in percent).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--benchmark", required=True, metavar="NAME|FILE",
        help="built-in name ('shapeood list benchmarks') or a YAML/TOML benchmark file",
    )  # fmt: skip
    add_model_options(parser, repeatable=True)
    parser.add_argument(
        "--methods", default="all", metavar="all|a,b,c",
        help="comma-separated method names (default all; 'shapeood list methods')",
    )  # fmt: skip
    parser.add_argument(
        "--aps", action="store_true",
        help="pick each method's parameters by AUROC on the ID-val/OOD-val split (OpenOOD APS)",
    )  # fmt: skip
    parser.add_argument(
        "--aps-criterion", choices=CRITERIA, default="auroc",
        help="what APS maximises on ID-val vs OOD-val: auroc (default, OpenOOD) or fpr95 "
        "(lowest FPR@95)",
    )  # fmt: skip
    parser.add_argument(
        "--fsood", action="store_true",
        help="full-spectrum OOD: count the benchmark's csid (covariate-shifted ID) sets as ID",
    )  # fmt: skip
    parser.add_argument(
        "--param", action="append", metavar="METHOD.PARAM=VALUE",
        help="fix a parameter (repeatable), e.g. --param ash_s.percentile=90",
    )  # fmt: skip
    parser.add_argument(
        "--fpr-convention", choices=("openood", "classic", "nearest"),
        help="FPR@95 convention of the main column (default: the benchmark's)",
    )  # fmt: skip
    parser.add_argument("--out", metavar="DIR", help="write CSV/JSON/Markdown/HTML report here")
    add_options(parser, "max_samples", "odin_max_samples")
    add_run_options(parser)
    parser.set_defaults(func=run)
