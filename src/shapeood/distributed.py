"""torch.distributed plumbing shared by extraction and training: who am I, gather, broadcast.

When a process group is initialised (``torchrun``; gloo on CPU, NCCL on GPUs) every helper acts
across ranks; in a single process each is the identity. Collectives run on the CPU for gloo and
on this rank's CUDA device for NCCL (``Group.device``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """``rank`` of ``world_size`` (``local_rank`` on its node) and the collectives' device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    enabled = distributed


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_cuda_index() -> int:
    """This process's GPU: ``$LOCAL_RANK`` (set by torchrun) or the current CUDA device."""
    local = os.environ.get("LOCAL_RANK")
    return int(local) if local is not None else torch.cuda.current_device()


def current_group() -> Group:
    """The default process group, or a single-process :class:`Group` when none is set up."""
    if not (dist.is_available() and dist.is_initialized()):
        return Group()
    device = torch.device("cpu")
    if "nccl" in str(dist.get_backend()).lower():
        device = torch.device("cuda", local_cuda_index())
    return Group(dist.get_rank(), dist.get_world_size(), _local_rank(), device)


def init_distributed(device_type: str = "cpu") -> Group:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); single process otherwise.

    Backend: NCCL for CUDA, gloo for CPU. An already initialised group is reused.
    """
    if dist.is_available() and dist.is_initialized():
        return current_group()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Group()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if device_type == "cuda":
        torch.cuda.set_device(_local_rank())
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return current_group()


def broadcast_object(group: Group, obj: Any = None) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not group.distributed:
        return obj
    box = [obj if group.is_main else None]
    dist.broadcast_object_list(box, src=0, device=group.device)
    return box[0]


def all_gather(obj: Any, group: Group) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    if not group.distributed:
        return [obj]
    out: list[Any] = [None] * group.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float], group: Group, device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (identity in a single process)."""
    if not group.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(group: Group) -> None:
    """Wait for every rank (nothing in a single process)."""
    if group.distributed:
        dist.barrier()


def all_gather_rows(
    group: Group, rows: torch.Tensor | None, width: int, dtype: torch.dtype, capacity: int
) -> list[torch.Tensor | None]:
    """Gather one (n_r, width) block per rank (``None`` for a rank that has none this round).

    Blocks are padded to ``capacity`` rows for the collective and trimmed afterwards.
    """
    count = torch.tensor([-1 if rows is None else rows.shape[0]], device=group.device)
    counts = [torch.zeros_like(count) for _ in range(group.world_size)]
    dist.all_gather(counts, count)
    padded = torch.zeros(capacity, width, dtype=dtype, device=group.device)
    if rows is not None:
        padded[: rows.shape[0]] = rows.reshape(rows.shape[0], width).to(group.device)
    blocks = [torch.empty_like(padded) for _ in range(group.world_size)]
    dist.all_gather(blocks, padded)
    out: list[torch.Tensor | None] = []
    for block, n in zip(blocks, counts, strict=True):
        n = int(n.item())
        out.append(None if n < 0 else block[:n].to("cpu"))
    return out


def broadcast_tensor(group: Group, tensor: torch.Tensor | None) -> torch.Tensor:
    """Rank 0's tensor on every rank (shape and dtype travel first)."""
    if not group.distributed:
        assert tensor is not None
        return tensor
    spec = broadcast_object(
        group, (tuple(tensor.shape), tensor.dtype) if group.is_main and tensor is not None else None
    )
    shape, dtype = spec
    if group.is_main:
        buffer = tensor.contiguous().to(group.device)
    else:
        buffer = torch.empty(shape, dtype=dtype, device=group.device)
    dist.broadcast(buffer, src=0)
    return buffer.to("cpu")
