"""ISH vs plain fine-tuning vs the original CIFAR-10 DenseNet-BC-100, scored with SCALE.

Reproduce (one run at a time; each training run fits about half an hour on two CPU cores):

    shapeood train --recipe cifar10_densenet_plain --out runs/cifar10_densenet_plain
    shapeood train --recipe cifar10_densenet_ish --out runs/cifar10_densenet_ish
    python benchmarks/ish_cifar10.py --runs runs --max-per-set 2000

It extracts pooled features once per model and dataset of the offline benchmark
``cifar10_offline`` (ID: CIFAR-10 JPEG test, near: TIN, far: MNIST + Textures; cached on disk),
then prints near/far AUROC and FPR@95 (OpenOOD convention) and the ID accuracy of the plain
network for each model and method. ``--max-per-set`` evaluates an evenly spaced subset of every
test set (quicker on a CPU); ``--aps`` picks SCALE's percentile on the held-out ID/OOD val sets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from shapeood import metrics
from shapeood.data import get_benchmark
from shapeood.detectors import create_detector
from shapeood.features import extract
from shapeood.models import adapt, load_model

KIT_MODEL = "densenet100_cifar10"


def evenly_spaced(dataset: Any, limit: int | None) -> tuple[Any, str | None]:
    """The dataset itself, or ``limit`` evenly spaced rows of it with a cache key."""
    n = len(dataset)
    if limit is None or limit >= n:
        return dataset, None
    rows = np.unique(np.linspace(0, n - 1, limit).round().astype(int)).tolist()
    return Subset(dataset, rows), f"{dataset.fingerprint()}-every-{n}/{len(rows)}"


def features(model: torch.nn.Module, dataset: Any, args: argparse.Namespace) -> Any:
    data, key = evenly_spaced(dataset, args.max_per_set)
    return extract(
        model,
        data,
        batch_size=args.batch_size,
        device=args.device,
        key=key,
        progress=not args.quiet,
    )


def scale_percentile(head: Any, model: torch.nn.Module, bench: Any, args: Any) -> float:
    """SCALE's percentile: fixed, or OpenOOD APS (max AUROC of ID val vs OOD val)."""
    if not args.aps:
        return float(args.percentile)
    id_val = features(model, bench.id_val, args).features
    ood_val = features(model, bench.ood_val, args).features
    grid = create_detector("scale").default_sweep["percentile"]
    aurocs = {}
    for p in grid:
        det = create_detector("scale", percentile=p).fit(head)
        aurocs[p] = metrics.auroc(det.score(id_val), det.score(ood_val))
    return float(max(grid, key=lambda p: aurocs[p]))


def evaluate(label: str, model: torch.nn.Module, bench: Any, args: Any) -> list[dict[str, Any]]:
    start = time.perf_counter()
    head = adapt(model).head
    fs_id = features(model, bench.id_test, args)
    ood = {
        group: {name: features(model, ds, args) for name, ds in sets.items()}
        for group, sets in bench.ood.items()
    }
    rows = []
    for method in args.methods:
        params: dict[str, Any] = {}
        if method == "scale":
            params["percentile"] = scale_percentile(head, model, bench, args)
        det = create_detector(method, **params).fit(head)
        id_scores = det.score(fs_id.features)
        row: dict[str, Any] = {"model": label, "method": method, **params}
        row["id_acc"] = fs_id.accuracy()
        row["n_id"] = len(fs_id)
        for group, sets in ood.items():
            per_set = {
                name: metrics.ood_metrics(id_scores, det.score(fs.features), bench.fpr_convention)
                for name, fs in sets.items()
            }
            for name, m in per_set.items():
                row[f"{name}_auroc"], row[f"{name}_fpr95"] = m["auroc"], m["fpr95"]
                row[f"n_{name}"] = len(sets[name])
            row[f"{group}_auroc"] = float(np.mean([m["auroc"] for m in per_set.values()]))
            row[f"{group}_fpr95"] = float(np.mean([m["fpr95"] for m in per_set.values()]))
        rows.append(row)
    print(f"{label}: evaluated in {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], bench: Any) -> str:
    sets = list(bench.ood_datasets())
    head = ["model", "method", "ID acc", "near AUROC", "near FPR95", "far AUROC", "far FPR95"]
    head += [f"{s} AUROC" for s in sets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        method = r["method"] + (f"@{r['percentile']:g}" if "percentile" in r else "")
        cells = [r["model"], method, f"{100 * r['id_acc']:.2f}"]
        for group in ("near", "far"):
            cells += [f"{100 * r[f'{group}_auroc']:.2f}", f"{100 * r[f'{group}_fpr95']:.2f}"]
        cells += [f"{100 * r[f'{s}_auroc']:.2f}" for s in sets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        type=Path,
        default=Path("runs"),
        help="folder holding cifar10_densenet_{plain,ish}/model.pt",
    )
    parser.add_argument("--plain", type=Path, help="weights of the plain fine-tuned model")
    parser.add_argument("--ish", type=Path, help="weights of the ISH fine-tuned model")
    parser.add_argument("--methods", default="scale,energy,msp")
    parser.add_argument("--percentile", type=float, default=85.0, help="SCALE percentile")
    parser.add_argument("--aps", action="store_true", help="choose SCALE's percentile by APS")
    parser.add_argument("--max-per-set", type=int, help="evenly spaced subset of each set")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    bench = get_benchmark("cifar10_offline")
    candidates = {
        "original": None,
        "plain fine-tuned": args.plain or args.runs / "cifar10_densenet_plain" / "model.pt",
        "ISH fine-tuned": args.ish or args.runs / "cifar10_densenet_ish" / "model.pt",
    }
    rows: list[dict[str, Any]] = []
    for label, weights in candidates.items():
        if weights is not None and not Path(weights).exists():
            print(f"{label}: {weights} not found, skipped (train it first, see --help)")
            continue
        model = load_model(KIT_MODEL, weights=None if weights is None else str(weights))
        rows += evaluate(label, model, bench, args)

    print(f"\n{bench.name} ({bench.fpr_convention} FPR@95), values in %:\n")
    print(markdown(rows, bench))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
