"""GPU figures: extraction of a ResNet-50 at 224 px and every detector on GPU tensors.

Part 1: ``shapeood.extract`` of a torchvision ResNet-50 (random weights; nothing is
downloaded) over ``--images`` synthetic normalised 224 x 224 images held in pinned CPU memory,
against a bare loop over the same ``DataLoader`` (same batch size) that moves each batch to the
GPU and calls ``model.forward`` to the pooled features, in the same precision: fp32, bf16
autocast, fp32 channels-last, bf16 channels-last. Each ratio is the median over ``--repeats``
back-to-back (bare, extract) pairs; ``extract / bare`` <= 1.0 means extraction runs at the bare
loop's speed.

Part 2: every post-hoc detector's ``score`` on ``--rows`` x 2,048 GPU features with a
1,000-class head, against the bare head matmul on the same tensors (median of paired ratios,
with ``torch.cuda.synchronize()`` around every timing).

Needs a CUDA GPU; without one it stops with a one-line message and exit status 2.

    python benchmarks/bench_gpu.py [--images 4096] [--batch-size 256] [--rows 50000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset


class SyntheticImages(Dataset):
    """``n`` seeded normalised float images (3, 224, 224) with labels, in shared CPU memory."""

    def __init__(self, n: int, size: int = 224) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, size, size, generator=gen)
        self.labels = torch.arange(n) % 1000
        self.name = f"synthetic{n}"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def _cuda_seconds(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def paired_ratio(
    fn: Callable[[], object], base: Callable[[], object], repeats: int
) -> tuple[float, float, float]:
    """``(median fn s, median base s, median of fn s / base s)`` over back-to-back pairs."""
    fn(), base()  # warm-up: cuDNN autotuning, allocator
    a, b, r = [], [], []
    for _ in range(repeats):
        tb = _cuda_seconds(base)
        ta = _cuda_seconds(fn)
        a.append(ta)
        b.append(tb)
        r.append(ta / tb)
    return statistics.median(a), statistics.median(b), statistics.median(r)


def extraction(args: argparse.Namespace) -> None:
    import torchvision

    import shapeood as so

    device = torch.device("cuda")
    dataset = SyntheticImages(args.images)
    print(
        f"ResNet-50 (random weights) at 224 px, {args.images} synthetic images, batch "
        f"{args.batch_size}, {args.workers} loader workers, {torch.cuda.get_device_name()}"
    )
    print(f"{'precision':<24}{'bare s':>9}{'extract s':>11}{'img/s bare':>12}{'extract/bare':>14}")
    for amp, channels_last in ((False, False), ("bf16", False), (False, True), ("bf16", True)):
        model = torchvision.models.resnet50(weights=None).eval().to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        fm = so.models.adapt(model)
        dtype = torch.bfloat16 if amp else None

        def bare(model=model, channels_last=channels_last, dtype=dtype) -> None:
            loader = DataLoader(
                dataset, batch_size=args.batch_size, num_workers=args.workers, pin_memory=True
            )
            pooled = torch.nn.Sequential(*list(model.children())[:-1])
            with torch.inference_mode():
                for images, _ in loader:
                    x = images.to(device, non_blocking=True)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    if dtype is None:
                        h = pooled(x).flatten(1).float()
                    else:
                        with torch.autocast("cuda", dtype=dtype):
                            h = pooled(x).flatten(1).float()
                    model.fc(h)

        def ours(fm=fm, amp=amp, channels_last=channels_last) -> None:
            so.extract(
                fm, dataset, batch_size=args.batch_size, device="cuda", amp=amp,
                channels_last=channels_last, num_workers=args.workers, cache=False,
                progress=False,
            )  # fmt: skip

        ours_s, bare_s, ratio = paired_ratio(ours, bare, args.repeats)
        label = f"{'bf16 autocast' if amp else 'fp32'}{' channels-last' if channels_last else ''}"
        print(
            f"{label:<24}{bare_s:>9.3f}{ours_s:>11.3f}{args.images / bare_s:>12.0f}{ratio:>14.3f}"
        )


def detectors(args: argparse.Namespace) -> None:
    import shapeood as so
    from shapeood.detectors import create_detector, list_detectors

    device = torch.device("cuda")
    gen = torch.Generator(device=device).manual_seed(0)
    d, c = 2048, 1000
    features = torch.relu(torch.randn(args.rows, d, generator=gen, device=device))
    weight = torch.randn(c, d, generator=gen, device=device) / math.sqrt(d)
    bias = torch.randn(c, generator=gen, device=device) * 0.01
    labels = torch.arange(args.rows, device=device) % c
    head = so.LinearHead(weight, bias)
    plain = head(features)
    print(f"\ndetectors on {args.rows} x {d} CUDA features, {c}-class head")
    print(f"{'detector':<18}{'score s':>10}{'x matmul':>10}{'cached s':>10}{'x matmul':>10}")
    floor_s = _cuda_seconds(lambda: head(features))
    print(f"{'head matmul':<18}{floor_s:>10.4f}{1:>10.2f}")
    for name in list_detectors():
        det = create_detector(name, **({"noise": 0.0} if name == "odin" else {}))
        det.fit(head, features, labels)
        s, _, r = paired_ratio(lambda det=det: det.score(features), lambda: head(features), 5)
        cs, _, cr = paired_ratio(
            lambda det=det: det.score(features, plain_logits=plain), lambda: head(features), 5
        )
        print(f"{name:<18}{s:>10.4f}{r:>10.2f}{cs:>10.4f}{cr:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4096, help="synthetic images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    parser.add_argument("--rows", type=int, default=50_000, help="feature rows for part 2")
    parser.add_argument("--repeats", type=int, default=3, help="timed pairs per row")
    parser.add_argument("--skip-extraction", action="store_true", help="only part 2")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "bench_gpu.py needs a CUDA GPU, and torch.cuda.is_available() is False on this "
            "machine: run it where a GPU is visible (CUDA build of torch, a driver, a device)",
            file=sys.stderr,
        )
        return 2
    torch.backends.cudnn.benchmark = True
    if not args.skip_extraction:
        extraction(args)
    detectors(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
