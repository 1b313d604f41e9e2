"""Thread use of CPU tensor work: tiny work on one thread, numpy chunk work spread over threads.

Every torch CPU op over a few thousand values still opens a parallel region, and when other
processes load the cores, waking the second thread takes a scheduler slice: measured at 2
threads with a load average of 19 on 2 cores, ``torch.logsumexp`` of an (80, 10) tensor took
38 ms, and 0.05 ms on one thread. ``single_threaded_below(cost)`` runs a block on one thread
when its estimated work is below ``SMALL_WORK`` multiply-adds (about 10 ms on one core), and
leaves the thread count alone otherwise.

Larger row-wise work (shaping, shaped logits, HIMPLoS) goes through ``for_row_chunks``: row
chunks of about ``CHUNK_VALUES`` values handed to a pool of ``torch.get_num_threads()``
threads, each chunk running its torch ops on one thread and its numpy ops with the GIL
released. No parallel region waits for a straggler thread, and no idle OpenMP thread spins
beside numpy work, which is what made row-blocked torch ops several times slower under load.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

SMALL_WORK = 1 << 24  # multiply-adds
# Chunks of about CHUNK_VALUES values (2 MiB of float32, inside a core's cache), run in the
# calling thread below INLINE_VALUES values in all (a hand-off costs more).
CHUNK_VALUES = 1 << 19
INLINE_VALUES = 1 << 16
# Scratch buffers up to this many values are kept per thread (``scratch``); larger ones are
# allocated at each use.
SCRATCH_VALUES = 1 << 22

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def single_threaded_below(cost: int, limit: int = SMALL_WORK) -> Iterator[None]:
    """One torch CPU thread inside the block when ``cost < limit``; restored afterwards."""
    threads = torch.get_num_threads()
    if cost >= limit or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def numel(x: Any) -> int:
    """Values of a CPU tensor or array (``SMALL_WORK`` for anything else: left untouched)."""
    if isinstance(x, torch.Tensor):
        return x.numel() if x.device.type == "cpu" else SMALL_WORK
    size = getattr(x, "size", None)
    return int(size) if isinstance(size, int) else SMALL_WORK


def small_detector_work(method: F) -> F:
    """Decorate ``Detector.method(self, features, ...)``: one thread for small inputs.

    Cost estimate: ``numel(features) * num_classes`` multiply-adds (one head matmul).
    """

    @functools.wraps(method)
    def wrapper(self: Any, features: Any, *args: Any, **kwargs: Any) -> Any:
        classes = getattr(getattr(self, "head_", None), "num_classes", 8)
        with single_threaded_below(numel(features) * max(8, int(classes))):
            return method(self, features, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


_pool: ThreadPoolExecutor | None = None
_local = threading.local()


def _forget_pool() -> None:
    """In a forked child (a DataLoader worker) the pool's threads do not exist: start anew."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers != workers:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shapeood-chunks")
    return _pool


def for_row_chunks(
    rows: int,
    row_values: int,
    work: Callable[[int, int], None],
    chunk_values: int | None = None,
) -> None:
    """Call ``work(lo, hi)`` on row chunks of about ``chunk_values`` (default ``CHUNK_VALUES``)
    values covering ``rows``.

    With several torch threads the chunks are spread over that many pool threads, each running
    its chunk's torch ops on one thread (torch and numpy release the GIL): no parallel region
    waits for a straggler under contention and no idle OpenMP thread spins beside numpy work.
    Small work, one torch thread, or a call from inside a chunk run inline.
    """
    step = max(1, (chunk_values or CHUNK_VALUES) // max(1, row_values))
    starts = range(0, rows, step)
    workers = torch.get_num_threads()
    inline = workers <= 1 or len(starts) == 1 or rows * row_values < INLINE_VALUES
    if inline or getattr(_local, "in_chunk", False):
        for lo in starts:
            work(lo, min(lo + step, rows))
        return

    def run(lo: int) -> None:
        _local.in_chunk = True
        try:
            work(lo, min(lo + step, rows))
        finally:
            _local.in_chunk = False

    torch.set_num_threads(1)
    try:
        list(_executor(workers).map(run, starts))
    finally:
        torch.set_num_threads(workers)


def scratch(key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A CPU buffer of ``shape`` kept by the calling thread under ``key``: uninitialised, valid
    until the thread next asks for ``key``, so it must never leave the function that asks.

    A chunk's temporaries reuse memory that is already mapped. A fresh buffer of a few MiB
    per chunk is mapped and freed again by the allocator each time (glibc returns the top of
    a heap once more than twice its largest block is free): measured at 256 x 2,048 float32,
    SCALE's chunk took 7.1 ms with a new output buffer and 3.3 ms with a reused one.
    """
    values = math.prod(shape)
    if values > SCRATCH_VALUES:
        return torch.empty(shape, dtype=dtype)
    buffers: dict[tuple[str, torch.dtype], torch.Tensor] = _local.__dict__.setdefault("scratch", {})
    buffer = buffers.get((key, dtype))
    if buffer is None or buffer.numel() < values:
        buffer = torch.empty(max(values, CHUNK_VALUES), dtype=dtype)
        buffers[(key, dtype)] = buffer
    return buffer[:values].view(shape)
