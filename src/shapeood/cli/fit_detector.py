"""``shapeood fit-detector``: fit an OOD detector and its threshold, save one ``.sood`` file."""

from __future__ import annotations

import argparse
from typing import Any

from shapeood.cli._options import add_model_options, add_options, model_from_args

DESCRIPTION = """\
Fit an OOD detector on a model and set its decision threshold so that --target-tpr of the
--id-data images are accepted as in-distribution (threshold = the k-th largest ID score,
k = ceil(target_tpr * N); is_ood = score < threshold). Write everything to one file that
'shapeood predict' and OODClassifier.load read.

--id-data / --fit-data are one of:
  a kit archive name or path   cifar10_test, /path/to/images.npz
  a benchmark role             cifar10_offline:id_val, cifar10_offline:id_train
  an OpenOOD image list        list.txt, its paths relative to --data-root
  an image folder              root/<class>/<image>
--fit-data feeds methods that learn from ID training features (dice, himplos).
"""

EPILOG = """\
examples:
  shapeood fit-detector --model resnet20_cifar10 --method scale \\
      --id-data cifar10_offline:id_val --out detector.sood
  shapeood fit-detector --model resnet20_cifar10 --method dice --id-data cifar10_offline:id_val \\
      --fit-data cifar10_offline:id_train --target-tpr 0.9 --out dice.sood
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fit-detector",
        help="fit a detector and its ID threshold on a model, save a .sood file",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    parser.add_argument("--method", default="scale", help="detector name (default scale)")
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="a hyperparameter of the method, e.g. --param percentile=90 "
                        "(repeatable; METHOD.KEY=VALUE as in eval is accepted)")  # fmt: skip
    parser.add_argument("--preset", help="a named parameter set of the method (e.g. cifar)")
    parser.add_argument("--id-data", required=True, metavar="DATA",
                        help="ID images the threshold is set on")  # fmt: skip
    parser.add_argument("--fit-data", metavar="DATA", help="ID training images (dice, himplos)")
    parser.add_argument("--target-tpr", type=float, default=0.95, metavar="F",
                        help="share of --id-data accepted as ID, in (0, 1] "
                        "(default 0.95)")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="FILE", help="the .sood file to write")
    parser.add_argument("--no-weights", action="store_true",
                        help="leave the model weights out of the file (load rebuilds the model "
                        "from --model)")  # fmt: skip
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16 CPU, fp16 CUDA)")
    add_options(parser, "device", "batch_size", "data_root", "max_samples", "quiet", "debug")
    parser.set_defaults(func=run)


def parse_params(items: list[str] | None, method: str) -> dict[str, Any]:
    """``["percentile=90"]`` -> ``{"percentile": 90}`` (values read as YAML)."""
    import yaml

    params: dict[str, Any] = {}
    for text in items or []:
        target, sep, raw = text.partition("=")
        prefix, dot, key = target.strip().rpartition(".")
        if not sep or not key:
            raise ValueError(f"--param {text!r}: write KEY=VALUE, e.g. --param percentile=90")
        if dot and prefix.replace("-", "_").lower() != method.replace("-", "_").lower():
            raise ValueError(f"--param {text!r} names method {prefix!r}, but --method is {method}")
        params[key] = yaml.safe_load(raw)
    return params


def resolve_data(spec: str, data_root: str | None, max_samples: int | None) -> Any:
    """A raw-image dataset (the classifier applies the model's transform)."""
    from shapeood.cli.extract import resolve_dataset

    name, sep, role = spec.partition(":")
    if sep and role and not name.lower().endswith((".txt", ".npz")) and len(name) > 1:
        from shapeood.data import get_benchmark, list_benchmarks

        if name in list_benchmarks():
            bench = get_benchmark(name, data_root)
            dataset = getattr(bench, role, None) if role in ("id_test", "id_val", "id_train") \
                else bench.ood_datasets().get(role)  # fmt: skip
            if dataset is None:
                roles = ["id_test", "id_val", "id_train", *bench.ood_datasets()]
                raise ValueError(
                    f"{spec}: benchmark {name} has no set {role!r}; use one of {roles}"
                )
            dataset.transform = None
            return _limited(dataset, max_samples)
    return _limited(resolve_dataset(spec, None, data_root), max_samples)


def _limited(dataset: Any, max_samples: int | None) -> Any:
    if max_samples is None or len(dataset) <= max_samples:
        return dataset
    import numpy as np
    from torch.utils.data import Subset

    rows = np.linspace(0, len(dataset) - 1, int(max_samples)).round().astype(int)
    subset = Subset(dataset, rows.tolist())
    subset.class_names = getattr(dataset, "class_names", None)
    subset.name = getattr(dataset, "name", "data")
    return subset


def run(args: argparse.Namespace) -> int:
    from shapeood import progress
    from shapeood.deploy import OODClassifier

    params = parse_params(args.param, args.method)
    options = {"arch": args.arch, "num_classes": args.num_classes}
    clf = OODClassifier(
        model_from_args(args), method=args.method, preset=args.preset, weights=args.weights,
        model_spec=args.model, load_options={k: v for k, v in options.items() if v is not None},
        device=args.device, amp=args.amp, **params,
    )  # fmt: skip
    id_data = resolve_data(args.id_data, args.data_root, args.max_samples)
    fit_data = None
    if args.fit_data:
        fit_data = resolve_data(args.fit_data, args.data_root, args.max_samples)
    progress.stage(f"fit {clf.method} on {len(id_data)} ID images (target TPR {args.target_tpr})")
    clf.fit(id_data, target_tpr=args.target_tpr, fit_data=fit_data,
            batch_size=args.batch_size, progress=progress.active())  # fmt: skip
    path = clf.save(args.out, include_model=not args.no_weights)
    print(f"method      {clf.detector!r}")
    print(f"threshold   {clf.threshold_:.6g}  (is_ood = score < threshold)")
    print(f"ID accepted {100 * clf.id_accepted_rate_:.2f}% of {clf.n_id_} (target "
          f"{100 * clf.target_tpr_:.2f}%)")  # fmt: skip
    if clf.fit_split_:
        print(f"fitted on   {clf.fit_split_} ({clf.n_fit_} images)")
    print(f"saved       {path}")
    return 0
