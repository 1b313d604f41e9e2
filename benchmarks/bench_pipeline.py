"""A whole ``so.evaluate`` on an image-file benchmark against a bare decode + transform + forward.

The benchmark is built from the offline kit in a temporary folder: PNG files and OpenOOD-style
image lists (``path label`` per line) for ID test / val / train (CIFAR-10 test and train subset),
OOD val and near-OOD (TinyImageNet), far-OOD (MNIST, Textures): ``--scale`` x 7,500 images
(default 1: 7,500 PNGs), described by a YAML benchmark file. The model is the kit's
ResNet-20 (``resnet20_cifar10``).

The bare loop decodes, transforms (the model's own preprocessing) and forwards every image of
every set ``evaluate`` reads, with the same batch size and DataLoader workers: the least any
evaluator must do. Then ``evaluate`` runs with every method, APS off and on, ODIN off and on,
cold (empty cache) and warm (same cache). Printed per run: seconds, ratio to the bare pass
(measured again right before each cold run, so that both sides of a ratio see the same load),
and every stage time ``evaluate`` reports.

Targets (issue 13): without ODIN, cold <= 1.10x the bare pass with APS off and <= 1.15x with
APS on; warm, the work inside ``evaluate`` <= 0.05x; a whole warm ``shapeood eval`` process on
``cifar10_offline`` demo subsets <= 2.5 s (``--cli``).

    python benchmarks/bench_pipeline.py [--scale 1] [--batch-size 256] [--workers N] [--cli]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SETS = {  # name: (kit file, role, row offset, count at scale 1, label): evenly spaced rows
    "id_test": ("cifar10_test.npz", "id", 0, 2000, None),
    "id_val": ("cifar10_test.npz", "id", 2, 500, None),
    "id_train": ("cifar10_train_subset.npz", "id", 0, 1000, None),
    "ood_val": ("tinyimagenet_val_32.npz", "ood", 1, 500, -1),
    "tin": ("tinyimagenet_val_32.npz", "ood", 0, 1500, -1),
    "mnist": ("mnist_test.npz", "ood", 0, 1000, -1),
    "textures": ("dtd_subset_32.npz", "ood", 0, 1000, -1),
}


def write_benchmark(kit: Path, folder: Path, scale: float) -> Path:
    """PNG files + image lists + a YAML benchmark file under ``folder``; returns the YAML path."""
    from PIL import Image

    lists = {}
    for name, (file, _, start, count, label) in SETS.items():
        with np.load(kit / file, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
        n = min(int(count * scale), len(images))
        rows = (start + np.linspace(0, len(images) - 3, n).round().astype(np.int64)) % len(images)
        (folder / name).mkdir(parents=True, exist_ok=True)
        lines = []
        for i, row in enumerate(rows):
            rel = f"{name}/{i:06d}.png"
            Image.fromarray(images[row]).save(folder / rel, compress_level=1)
            lines.append(f"{rel} {int(labels[row]) if label is None else 0}")
        lists[name] = folder / f"{name}.txt"
        lists[name].write_text("\n".join(lines) + "\n", encoding="utf-8")

    def src(name: str) -> str:
        return f"{{imglist: {lists[name]}, root: {folder}}}"

    spec = f"""name: pipeline_png
family: cifar
num_classes: 10
resize: 32
crop: 32
id:
  test: {src("id_test")}
  val: {src("id_val")}
  train: {src("id_train")}
ood:
  val: {src("ood_val")}
  near:
    tin: {src("tin")}
  far:
    mnist: {src("mnist")}
    textures: {src("textures")}
"""
    path = folder / "pipeline.yaml"
    path.write_text(spec, encoding="utf-8")
    return path


def bare_pass(model, bench, roles: list[str], batch_size: int, workers: int) -> float:
    """Seconds to decode, transform and forward every image of ``roles`` (plain DataLoader)."""
    import torch
    from torch.utils.data import DataLoader

    from shapeood.features.extraction import TransformedDataset
    from shapeood.models import transform_for

    transform = transform_for(model.pretrained_cfg, resize=bench.resize, crop=bench.crop)
    datasets = {"id_test": bench.id_test, "id_val": bench.id_val, "ood_val": bench.ood_val,
                "id_train": bench.id_train}  # fmt: skip
    for group in ("near", "far"):
        datasets.update(bench.ood.get(group, {}))
    start = time.perf_counter()
    with torch.inference_mode():
        for role in roles:
            loader = DataLoader(
                TransformedDataset(datasets[role], transform), batch_size=batch_size,
                num_workers=workers,
            )  # fmt: skip
            for images, _ in loader:
                model(images)
    return time.perf_counter() - start


def _timings(df) -> dict[str, float]:
    attrs = getattr(df, "attrs", {}) or {}
    timings = attrs.get("timings") or getattr(df, "timings", None) or {}
    return {k: float(v) for k, v in dict(timings).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="x 7,500 images (default 1)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers "
                        "(default: what extract chooses for image files)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=1, help="cold/warm runs per config")
    parser.add_argument("--no-odin", action="store_true", help="skip the ODIN configurations")
    parser.add_argument("--cli", action="store_true", help="also time a warm shapeood eval")
    parser.add_argument("--keep", default=None, help="write the benchmark here and keep it")
    args = parser.parse_args(argv)

    import torch

    import shapeood as so
    from shapeood.features.extraction import default_num_workers
    from shapeood.paths import data_root

    torch.set_num_threads(args.threads)
    kit = data_root()
    if not (kit / "cifar10_test.npz").exists():
        print(f"the offline kit is not at {kit}: set SHAPEOOD_DATA", file=sys.stderr)
        return 2
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="shapeood-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        yaml_path = write_benchmark(kit, folder, args.scale)
        print(f"wrote the PNG benchmark in {time.perf_counter() - t0:.1f} s: {folder}")
        bench = so.data.load_benchmark_file(yaml_path)
        model = so.models.load_model("resnet20_cifar10").eval()
        # torchvision (decoders, transforms) imported before any timing, on both sides, as in
        # any script that uses it; DataLoader workers then inherit it instead of importing it.
        from shapeood.data.decode import prepare_decoding

        prepare_decoding()
        workers = default_num_workers(bench.id_test) if args.workers is None else args.workers
        print(
            f"model resnet20_cifar10, batch {args.batch_size}, {workers} loader worker(s), "
            f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.2f}"
        )
        all_methods = list(so.detectors.list_detectors())
        configs = []
        for odin in ((False, True) if not args.no_odin else (False,)):
            for aps in (False, True):
                configs.append((aps, odin))
        print(
            f"{'config':<22}{'run':<6}{'evaluate s':>11}{'bare s':>9}{'x bare':>8}  stages (s)"
        )
        for aps, odin in configs:
            methods = [m for m in all_methods if odin or m != "odin"]
            roles = ["id_test", "tin", "mnist", "textures", "id_val", "id_train"]
            if aps:
                roles.append("ood_val")
            label = f"APS {'on' if aps else 'off'}, ODIN {'on' if odin else 'off'}"
            for _ in range(args.repeats):
                cache = folder / "cache"
                shutil.rmtree(cache, ignore_errors=True)
                bare = bare_pass(model, bench, roles, args.batch_size, workers)
                for run in ("cold", "warm"):
                    start = time.perf_counter()
                    df = so.evaluate(
                        model, bench, methods=methods, aps=aps, batch_size=args.batch_size,
                        cache=cache, progress=False, num_workers=workers,
                    )  # fmt: skip
                    seconds = time.perf_counter() - start
                    stages = _timings(df)
                    text = ", ".join(f"{k}={v:.2f}" for k, v in stages.items())
                    print(
                        f"{label:<22}{run:<6}{seconds:>11.2f}{bare:>9.2f}{seconds / bare:>8.3f}"
                        f"  {text}",
                        flush=True,
                    )
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        if not args.no_odin:
            odin_cost(model, bench, args.batch_size)
        if args.cli:
            warm_cli(folder, args)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def odin_cost(model, bench, batch_size: int) -> None:
    """ODIN over the ID test images (decoded once, in memory) against one bare forward pass."""
    import itertools

    import torch
    from torch.utils.data import TensorDataset

    from shapeood.features.extraction import TransformedDataset
    from shapeood.features.perturbation import count_passes, perturbation_scores
    from shapeood.models import transform_for

    transform = transform_for(model.pretrained_cfg, resize=bench.resize, crop=bench.crop)
    decoded = TransformedDataset(bench.id_test, transform)
    images = torch.stack([decoded[i][0] for i in range(len(decoded))])
    data = TensorDataset(images, torch.zeros(len(images), dtype=torch.int64))

    def bare() -> None:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size])

    single = [{"temperature": 1000, "noise": 0.0014}]
    grid = [
        {"temperature": t, "noise": n}
        for t, n in itertools.product([1, 10, 100, 1000], [0.0014, 0.0028])
    ]
    rows = []
    for label, points in (("single point", single), ("OpenOOD grid 4 x 2", grid)):
        bare_s = _timed(bare)
        odin_s = _timed(lambda points=points: perturbation_scores(
            model, data, points, batch_size=batch_size, cache=None))  # fmt: skip
        passes = count_passes(points)
        rows.append((label, passes, odin_s, bare_s))
    print(f"\nODIN on {len(images)} decoded ID test images (batch {batch_size}):")
    for label, passes, odin_s, bare_s in rows:
        separate = 3 * (len(single) if label == "single point" else len(grid))
        print(
            f"  {label:<20} passes/image: {passes['forward']} forward + {passes['backward']} "
            f"backward (separate runs: {separate} passes); {odin_s:.2f} s = "
            f"{odin_s / bare_s:.2f}x a bare forward pass ({bare_s:.2f} s)"
        )


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def warm_cli(folder: Path, args: argparse.Namespace) -> None:
    """Wall time of a whole warm ``shapeood eval`` process on cifar10_offline demo subsets,
    beside the floor that any such process pays: importing torch and pandas (the result is a
    DataFrame and every detector runs on torch), then ``os._exit`` as the CLI does, timed in
    alternation with it.

    Bytecode is written and read as in an installed package (``PYTHONDONTWRITEBYTECODE`` is
    dropped for these processes), so that the figure is not the compilation of shapeood's
    modules at every start.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["SHAPEOOD_CACHE"] = str(folder / "cli-cache")
    cmd = [
        sys.executable, "-m", "shapeood.cli", "eval", "--model", "resnet20_cifar10",
        "--benchmark", "cifar10_offline", "--methods", "all", "--max-samples", "350",
        "--odin-max-samples", "32", "--quiet",
    ]  # fmt: skip
    # shapeood's CLI leaves by os._exit once its output is flushed: so does the floor
    floor_cmd = [sys.executable, "-c", "import os, torch, pandas; os._exit(0)"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)  # cold: fills the cache
    times, floors = [], []
    for _ in range(max(3, args.repeats)):
        times.append(_timed(lambda: subprocess.run(cmd, env=env, check=True, capture_output=True)))
        floors.append(_timed(lambda: subprocess.run(floor_cmd, env=env, check=True)))
    python_s = _timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    eval_s, floor_s = statistics.median(times), statistics.median(floors)
    print(
        f"warm shapeood eval process (cifar10_offline, --max-samples 350, all methods): median "
        f"{eval_s:.2f} s of {[round(t, 2) for t in times]}; import torch + pandas alone: median "
        f"{floor_s:.2f} s of {[round(t, 2) for t in floors]}; beyond that floor "
        f"{eval_s - floor_s:.2f} s (target for the whole process: 2.5 s); bare python start "
        f"{python_s:.2f} s, load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
