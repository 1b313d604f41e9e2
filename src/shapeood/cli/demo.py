"""``shapeood demo``: every post-hoc method with APS on the offline CIFAR-10 benchmark."""

from __future__ import annotations

import argparse
from typing import Any

from shapeood.cli._options import add_options
from shapeood.cli.eval import add_run_options, run_and_report

MODEL = "densenet100_cifar10"
BENCHMARK = "cifar10_offline"
# Evenly spaced rows per dataset role, sized for a 2-core CPU (cold run < 3 min).
DEMO_SAMPLES = {"id_test": 1200, "id_val": 250, "ood_val": 250, "id_train": 400, "ood": 350}
DEMO_ODIN_SAMPLES = 32

EPILOG = f"""\
what it runs:
  model      {MODEL} (DenseNet-BC-100 k=12, DICE checkpoint, offline kit)
  benchmark  {BENCHMARK}: ID CIFAR-10 test (JPEG copy), near-OOD TinyImageNet,
             far-OOD MNIST and Textures; APS on held-out ID-val vs OOD-val (TIN);
             DICE mean / HIMPLoS prototypes from the CIFAR-10 train subset
  methods    all: msp, max_logit, energy, odin, dice, react, ash_p, ash_b, ash_s,
             scale, lhact, himplos (APS for every method with a grid)
  subsets    by default {DEMO_SAMPLES}
             evenly spaced images (--full for every image); ODIN perturbs the input and
             runs through the network (forward + backward + forward per image), so it
             uses {DEMO_ODIN_SAMPLES} images per set with OpenOOD's defaults (T=1000,
             noise=0.0014) and no APS unless --full.

examples:
  shapeood demo                       # a few minutes cold, seconds when cached
  shapeood demo --out /tmp/demo --no-odin
  shapeood demo --full --device cuda  # every image, ODIN with APS
"""


def run(args: argparse.Namespace) -> int:
    methods = "all"
    if args.no_odin:
        from shapeood.detectors import list_detectors

        methods = ",".join(n for n in list_detectors() if n != "odin")
    if args.full:
        max_samples, odin_samples, grids = None, None, None
    else:
        max_samples = dict(DEMO_SAMPLES)
        if args.max_samples is not None:
            max_samples = int(args.max_samples)
        odin_samples = args.odin_max_samples or DEMO_ODIN_SAMPLES
        grids = {"odin": {}} if not args.no_odin else None
    scope = "every image" if max_samples is None else f"subsets {max_samples}"
    odin_note = ""
    if not (args.no_odin or args.full):
        odin_note = f"; ODIN on {odin_samples} images per set, OpenOOD defaults (no APS)"
    print(f"shapeood demo: {MODEL} on {BENCHMARK}, methods={methods}, APS on; {scope}{odin_note}")
    return run_and_report(
        args,
        model=MODEL,
        benchmark=BENCHMARK,
        methods=methods,
        aps=True,
        out=args.out,
        max_samples=max_samples,
        odin_max_samples=odin_samples,
        grids=grids,
        title=f"shapeood demo: {MODEL} on {BENCHMARK}",
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run every method with APS on the offline CIFAR-10 benchmark",
        description="Offline demo: DenseNet-BC-100 on CIFAR-10 vs TinyImageNet, MNIST and "
        "Textures, every post-hoc method with APS; prints the table and writes a report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="default runs/demo")
    parser.add_argument("--full", action="store_true", help="every image; ODIN with APS")
    add_options(
        parser, "max_samples", "odin_max_samples",
        help={
            "max_samples": "use at most N evenly spaced images of every dataset (default: "
            "the demo subsets above)",
            "odin_max_samples": "at most N evenly spaced images per set for ODIN, which runs "
            f"through the model (default {DEMO_ODIN_SAMPLES})",
        },
        aliases={"odin_max_samples": ("--odin-samples",)},
    )  # fmt: skip
    parser.add_argument("--no-odin", action="store_true", help="leave ODIN out")
    add_run_options(parser)
    parser.set_defaults(func=run)
