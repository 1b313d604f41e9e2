"""Extraction speed against a bare ``model(x)`` loop, and the reload time of a cached set.

1. Throughput: ``shapeood.extract`` (cold cache: chunk files, consolidation included) versus a
   bare ``for x, _ in loader: model(x)`` loop over the same DataLoader batches, timed alternately
   in the same run. Target: extract / bare throughput >= 0.95 (median and best of the repeats;
   on a shared machine single pairs scatter).
2. Reload: a cached FeatureSet of 50,000 x 2,048 (ImageNet ResNet-50 size) opened with
   ``FeatureCache.load`` (memory-mapped), then fully read; also a plain (non-mapped) load.
   Target < 1 s.

    python benchmarks/bench_extract.py [--model resnet20_cifar10] [--images 4000] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from shapeood.data import ArrayDataset
from shapeood.features import FeatureCache, FeatureSet, extract, save_featureset
from shapeood.models import adapt, load_model, transform_for
from shapeood.paths import kit_file


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_bare_loop(model, dataset, batch_size: int, device: torch.device, workers: int) -> float:
    """Seconds for ``model(x)`` over every batch of the same DataLoader that extract uses."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(range(len(dataset))),
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    model.eval().to(device)
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for x, _ in loader:
            model(x.to(device, non_blocking=True))
    _sync(device)
    return time.perf_counter() - start


def time_extract(fm, dataset, batch_size: int, device: torch.device, workers: int) -> float:
    """Seconds for a cold ``extract`` into a fresh cache folder."""
    with tempfile.TemporaryDirectory() as tmp:
        _sync(device)
        start = time.perf_counter()
        extract(
            fm,
            dataset,
            batch_size=batch_size,
            device=device,
            num_workers=workers,
            cache=tmp,
            progress=False,
            channels_last=False,
        )
        _sync(device)
        return time.perf_counter() - start


def bench_throughput(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    model = load_model(args.model)
    fm = adapt(model)
    dataset = ArrayDataset(
        kit_file("cifar10_test.npz"), transform=transform_for(model), indices=range(args.images)
    )
    dataset[0]  # load the archive once, outside the timings
    time_bare_loop(model, dataset, args.batch_size, device, args.workers)  # warm-up
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(time_bare_loop(model, dataset, args.batch_size, device, args.workers))
        ours.append(time_extract(fm, dataset, args.batch_size, device, args.workers))
    bare_s, ours_s = statistics.median(bare), statistics.median(ours)
    return {
        "model": args.model,
        "device": str(device),
        "images": args.images,
        "batch_size": args.batch_size,
        "bare_img_per_s": round(args.images / bare_s, 1),
        "extract_img_per_s": round(args.images / ours_s, 1),
        "throughput_ratio": round(bare_s / ours_s, 3),
        "best_ratio": round(min(bare) / min(ours), 3),  # least disturbed run of each
        "pair_ratios": [round(b / o, 3) for b, o in zip(bare, ours, strict=True)],
        "bare_s": [round(t, 3) for t in bare],
        "extract_s": [round(t, 3) for t in ours],
    }


def bench_reload(n: int = 50_000, d: int = 2_048, c: int = 1_000) -> dict:
    gen = torch.Generator().manual_seed(0)
    fs = FeatureSet(
        torch.rand(n, d, generator=gen),
        torch.randn(n, c, generator=gen),
        torch.randint(0, c, (n,), generator=gen),
        {"model": "bench", "dataset": "random"},
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp)
        save_featureset(fs, Path(tmp) / "bench-entry")
        start = time.perf_counter()
        back = cache.load("bench-entry")
        open_s = time.perf_counter() - start
        total = float(back.features.sum()) + float(back.logits.sum())  # touch every page
        open_and_read_s = time.perf_counter() - start
        start = time.perf_counter()
        plain = cache.load("bench-entry", mmap=False)
        plain_s = time.perf_counter() - start
        assert torch.equal(plain.features, fs.features) and total == total
    return {
        "shape": [n, d],
        "mmap_open_s": round(open_s, 4),
        "mmap_open_and_read_all_s": round(open_and_read_s, 3),
        "plain_load_s": round(plain_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20_cifar10")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"throughput": bench_throughput(args)}, indent=2), flush=True)
    print(json.dumps({"reload": bench_reload()}, indent=2))


if __name__ == "__main__":
    main()
