"""Cosine learning-rate schedule stepped every iteration (as OpenOOD's trainers)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def cosine_factor(step: int, total_steps: int, start: float = 1.0, end: float = 0.0) -> float:
    """``end + (start - end) * (1 + cos(pi * step / total_steps)) / 2``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    progress = min(max(step, 0), total_steps) / total_steps
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


class CosineFactor:
    """Picklable LambdaLR factor: from 1 to ``min_lr / lr`` over ``total_steps`` iterations."""

    def __init__(self, total_steps: int, lr: float, min_lr: float = 1e-6) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.total_steps = int(total_steps)
        self.end = float(min_lr) / float(lr)

    def __call__(self, step: int) -> float:
        return cosine_factor(step, self.total_steps, 1.0, self.end)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, lr: float, min_lr: float = 1e-6
) -> LambdaLR:
    """``LambdaLR`` whose factor decays by a half cosine from 1 to ``min_lr / lr``.

    Call ``scheduler.step()`` after every optimiser step; ``total_steps = epochs * iters``.
    """
    return LambdaLR(optimizer, CosineFactor(total_steps, lr, min_lr))
