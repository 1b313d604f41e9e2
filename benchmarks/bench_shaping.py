"""Time the shaping functions and the top-k strategies behind ASH/SCALE on one input.

Input: ``relu`` of a seeded Gaussian, N x D (default 50,000 x 2,048). Part 1 compares ways to
get what ASH/SCALE need from each row (the k largest values, or only their sum ``S2``):

* ``topk sorted`` / ``topk unsorted``: ``torch.topk`` on the whole matrix;
* ``topk unsorted, row blocks``: the same on blocks of rows (what ``shapeood.shaping`` does on
  accelerators and for autograd inputs);
* ``kthvalue + tie fill``: the k-th largest value ``t`` by ``kthvalue``, mask ``x > t`` and
  the first ``k - count`` entries equal to ``t`` (exact k, deterministic ties);
* ``kthvalue S2``: SCALE only, ``S2 = sum(x > t) + (k - count(x > t)) * t`` (tie invariant);
* ``sort``: a full descending sort (torch);
* ``np.partition, chunks in threads`` / ``np.sort, chunks in threads``: numpy on row chunks of
  ``shapeood._threads.CHUNK_VALUES`` values spread over ``--threads`` threads;
* ``shapeood cut``: ``shapeood._select.cut_rows`` (the sort, plus the cut, S2 and tie flags),
  what ASH and SCALE use on CPU.

Part 2 times every public shaping function. Part 3 (``--chunk-sweep``) times the ASH-S, SCALE
and LHAct detectors (shaping + a 1,000-class head) with the CPU chunks of ``shapeood._threads``
set to 2^17, 2^19 and 2^21 values, then with ``shaping.MATMUL_CHUNK_VALUES`` (the rows a thread
multiplies by the head at once) set to 2^19-2^22, each paired with the bare head matmul (median
of per-pair ratios): the measurement behind both constants. Times are the best of
``--repeats`` calls; the last column is the ratio to the fastest strategy of part 1 (read
ratios, not absolute times, on a shared machine).

    python benchmarks/bench_shaping.py [--rows 50000] [--dim 2048] [--threads 2] [--chunk-sweep]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from shapeood import _select, _threads, shaping

BLOCK_ROWS = 256


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def kthvalue_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """Exactly k True per row: values above the k-th largest, then the first ties."""
    n = x.shape[1]
    t = x.kthvalue(n - k + 1, dim=1, keepdim=True).values
    above = x > t
    missing = k - above.sum(dim=1, keepdim=True)
    tied = x == t
    return above | (tied & (tied.cumsum(dim=1) <= missing))


def kthvalue_s2(x: torch.Tensor, k: int) -> torch.Tensor:
    n = x.shape[1]
    t = x.kthvalue(n - k + 1, dim=1, keepdim=True).values
    above = x > t
    return (x * above).sum(dim=1) + (k - above.sum(dim=1)) * t.squeeze(1)


def in_blocks(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        for rows in x.split(BLOCK_ROWS):
            fn(rows)

    return run


def numpy_in_chunks(fn: Callable[[np.ndarray], object], x: torch.Tensor) -> Callable[[], None]:
    """``fn`` on row chunks of ``CHUNK_VALUES`` values, in ``torch.get_num_threads()`` threads."""
    a = x.numpy()
    return lambda: _threads.for_row_chunks(a.shape[0], a.shape[1], lambda lo, hi: fn(a[lo:hi]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=2_048)
    parser.add_argument("--percentile", type=float, default=85.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-sweep", action="store_true", help="only part 3")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(args.rows, args.dim, generator=gen))
    k = shaping.percentile_to_k(args.dim, args.percentile)
    print(
        f"x: {args.rows} x {args.dim} relu(N(0,1)), p = {args.percentile} -> k = {k}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"best of {args.repeats}"
    )

    if args.chunk_sweep:
        return chunk_sweep(x, args)

    # exactness of the alternatives against torch.topk (no ties at the cut with this input)
    sample = x[:2000]
    reference = shaping.top_k_mask(sample, args.percentile)
    assert torch.equal(kthvalue_mask(sample, k), reference)
    s2 = sample.topk(k, dim=1).values.sum(dim=1)
    torch.testing.assert_close(kthvalue_s2(sample, k), s2)
    torch.testing.assert_close(_select.cut_rows(sample, k)[1], s2)

    strategies: dict[str, Callable[[], object]] = {
        "topk sorted": lambda: x.topk(k, dim=1),
        "topk unsorted": lambda: x.topk(k, dim=1, sorted=False),
        "topk unsorted, row blocks": in_blocks(lambda r: r.topk(k, dim=1, sorted=False), x),
        "kthvalue + tie fill, blocks": in_blocks(lambda r: kthvalue_mask(r, k), x),
        "kthvalue S2, row blocks": in_blocks(lambda r: kthvalue_s2(r, k), x),
        "sort": lambda: x.sort(dim=1, descending=True),
        "np.partition, chunks in threads": numpy_in_chunks(
            lambda a: np.partition(a, a.shape[1] - k, axis=1), x
        ),
        "np.sort, chunks in threads": numpy_in_chunks(lambda a: np.sort(a, axis=1), x),
        "shapeood cut": lambda: _select.cut_rows(x, k),
    }
    times = {name: best_time(fn, args.repeats) for name, fn in strategies.items()}
    fastest = min(times.values())
    print(f"\n{'top-k strategy':<30}{'seconds':>10}{'ratio':>8}")
    for name, seconds in times.items():
        print(f"{name:<30}{seconds:>10.3f}{seconds / fastest:>8.2f}")

    functions: dict[str, Callable[[], object]] = {
        "ash_p": lambda: shaping.ash_p(x, args.percentile),
        "ash_b": lambda: shaping.ash_b(x, args.percentile),
        "ash_s": lambda: shaping.ash_s(x, args.percentile),
        "scale": lambda: shaping.scale(x, args.percentile),
        "react": lambda: shaping.react(x, 1.0),
        "lhact": lambda: shaping.lhact(x),
        "ish_shape": lambda: shaping.ish_shape(x, 85),
        "copy (memory floor)": lambda: x.clone(),
    }
    print(f"\n{'shaping function':<30}{'seconds':>10}{'ratio':>8}")
    for name, fn in functions.items():
        seconds = best_time(fn, args.repeats)
        print(f"{name:<30}{seconds:>10.3f}{seconds / fastest:>8.2f}")
    return 0


def chunk_sweep(x: torch.Tensor, args: argparse.Namespace) -> int:
    """ASH-S, SCALE and LHAct per CPU chunk size, each paired with the head matmul.

    Two sizes are swept in turn, the other one left at its default: ``_threads.CHUNK_VALUES``
    (the rows one thread shapes at a time) and ``shaping.MATMUL_CHUNK_VALUES`` (the rows one
    thread multiplies by the head at a time, shaped in sub-blocks of ``CHUNK_VALUES``).
    """
    import os
    import statistics

    from shapeood import LinearHead, create_detector

    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(1000, x.shape[1], generator=gen) / math.sqrt(x.shape[1])
    bias = torch.zeros(1000)
    head = LinearHead(weight, bias)
    detectors = {n: create_detector(n).fit(head) for n in ("ash_s", "scale", "lhact")}

    def matmul() -> None:
        torch.addmm(bias, x, weight.t())

    def timed(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    sweeps = (
        (_threads, "CHUNK_VALUES", (1 << 17, 1 << 19, 1 << 21)),
        (shaping, "MATMUL_CHUNK_VALUES", (1 << 19, 1 << 20, 1 << 21, 1 << 22)),
    )
    print(f"load average {os.getloadavg()[0]:.2f}")
    for module, attribute, sizes in sweeps:
        saved = getattr(module, attribute)
        print(f"{module.__name__}.{attribute} (default 2^{saved.bit_length() - 1})")
        print(f"{'values':<10}" + "".join(f"{n + ' s':>10}{'x matmul':>10}" for n in detectors))
        try:
            for size in sizes:
                setattr(module, attribute, size)
                line = f"{f'2^{size.bit_length() - 1}':<10}"
                for det in detectors.values():
                    det.score(x)  # warm-up
                    pairs = [
                        (timed(matmul), timed(lambda d=det: d.score(x)))
                        for _ in range(args.repeats)
                    ]
                    line += f"{statistics.median(t for _, t in pairs):>10.3f}"
                    line += f"{statistics.median(t / m for m, t in pairs):>10.2f}"
                print(line)
        finally:
            setattr(module, attribute, saved)
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
