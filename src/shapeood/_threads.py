"""Small tensor work on one thread: a parallel region costs more than it saves on tiny inputs.

Every torch CPU op over a few thousand values still opens a parallel region, and when other
processes load the cores, waking the second thread takes a scheduler slice: measured at 2
threads with a load average of 19 on 2 cores, ``torch.logsumexp`` of an (80, 10) tensor took
38 ms, and 0.05 ms on one thread. ``single_threaded_below(cost)`` runs a block on one thread
when its estimated work is below ``SMALL_WORK`` multiply-adds (about 10 ms on one core), and
leaves the thread count alone otherwise.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

SMALL_WORK = 1 << 24  # multiply-adds

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
