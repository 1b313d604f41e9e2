"""Full-spectrum OOD on the offline kit: ``cifar10_offline`` plus a csid set built at run time.

The csid (covariate-shifted ID) set is a deterministic corrupted copy of the ID test images
(contrast lowered to 60% around mid-grey plus Gaussian noise of 20 grey levels, seed 0), written
to a temporary folder and never kept. The script prints the OpenOOD table of each method twice:
standard OOD (ID = ID test) and full-spectrum (ID = ID test + the corrupted copy, as OpenOOD's
``eval_ood(fsood=True)``), with the plain network's ID accuracy in both modes.

    python benchmarks/fsood_offline.py --max-samples 2000 --methods msp,energy,react,ash_s,scale
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

import shapeood as so
from shapeood import paths
from shapeood.data import SourceSpec, benchmark_spec, build_benchmark


def corrupted_copy(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """``clip(round(0.6 x + 0.4 * 128 + N(0, 20^2)))`` as uint8: lower contrast plus noise."""
    noise = np.random.default_rng(seed).normal(0.0, 20.0, images.shape)
    shifted = 0.6 * images.astype(np.float64) + 0.4 * 128 + noise
    return np.clip(np.round(shifted), 0, 255).astype(np.uint8)


def kit_with_csid(folder: Path) -> so.data.Benchmark:
    """``cifar10_offline`` with a ``cifar10_corrupted`` csid set of its ID test rows."""
    kit = paths.data_root()
    spec = benchmark_spec("cifar10_offline", kit)
    rows = np.asarray(spec.id_test.rows)
    with np.load(kit / "cifar10_test.npz") as z:
        images, labels = z["images"][rows], z["labels"][rows]
    path = folder / "cifar10_corrupted.npz"
    np.savez(path, images=corrupted_copy(images), labels=labels)
    csid = {"cifar10_corrupted": SourceSpec("npz", str(path))}
    return build_benchmark(dataclasses.replace(spec, csid=csid), kit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20_cifar10")
    parser.add_argument("--methods", default="msp,energy,react,ash_s,scale,dice,himplos")
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--cache", default=None, help="feature cache folder (default: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = kit_with_csid(Path(tmp))
        cache = args.cache or Path(tmp) / "cache"
        net = so.models.load_model(args.model)
        for fsood in (False, True):
            started = time.perf_counter()
            df = so.evaluate(
                net, bench, methods=args.methods, fsood=fsood, cache=cache,
                max_samples=args.max_samples, progress=False,
            )  # fmt: skip
            mode = "full-spectrum (ID = test + csid)" if fsood else "standard OOD (ID = test)"
            print(f"\n== {args.model} on {bench.name}, {mode}: n_id={df['n_id'].iloc[0]}, "
                  f"plain ACC {df.attrs['plain_accuracy']:.2f}%, "
                  f"{time.perf_counter() - started:.1f} s")  # fmt: skip
            means = df[df["dataset"].isin(["nearood", "farood"])]
            table = means.pivot(index="method", columns="dataset", values=["AUROC", "FPR@95"])
            print(table.round(2).loc[df["method"].unique()].to_string())


if __name__ == "__main__":
    main()
