"""Tiny stand-ins for the feature tests: a counting feature model and a fingerprinted dataset.

Also runnable as a script (used by the SIGKILL test and the torchrun test):

    python tests/features_helpers.py slow CACHE_DIR            # slow extraction, to be killed
    python -m torch.distributed.run ... tests/features_helpers.py dist CACHE_DIR OUT_DIR
    python -m torch.distributed.run ... tests/features_helpers.py distslow CACHE_DIR  # to kill
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from shapeood.head import LinearHead

NUM_CLASSES = 5
DIM = 12


def kill_after_chunks(
    proc: subprocess.Popen, chunk_dir: Path, chunks: int, timeout: float, group: bool = False
) -> None:
    """SIGKILL ``proc`` (its whole process group with ``group``) once ``chunks`` row chunks exist.

    ``proc`` must have been started with ``stderr=PIPE``; it is closed on return.

    Fails the calling test when the process ends early or no chunk appears within ``timeout`` s.
    """
    import pytest

    def kill() -> None:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()

    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if chunk_dir.is_dir() and len(list(chunk_dir.glob("rows_*.npz"))) >= chunks:
                break
            if proc.poll() is not None:
                pytest.fail(f"the extraction ended early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail(f"no chunk appeared within {timeout:g} s")
        kill()
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            kill()
            proc.wait()
        proc.stderr.close()


class TinyFeatureModel(nn.Module):
    """conv -> relu -> global average pool: (N, 3, 8, 8) -> (N, DIM); counts forward calls."""

    layer_name = "pool"

    def __init__(self, seed: int = 0, delay: float = 0.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, DIM, 3, padding=1)
        linear = nn.Linear(DIM, NUM_CLASSES)
        with torch.no_grad():
            for p in [*self.conv.parameters(), *linear.parameters()]:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.head = LinearHead.from_linear(linear)
        self.pretrained_cfg = {"name": "tiny", "num_classes": NUM_CLASSES}
        self.delay = delay
        self.calls = 0
        self.rows = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        if self.delay:
            time.sleep(self.delay)
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


class Interrupted(RuntimeError):
    """What ``FailingModel`` raises."""


class FailingModel(TinyFeatureModel):
    """Raises ``Interrupted`` at forward call ``fail_at`` (an interruption in the loop)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    def features(self, x):
        if self.calls + 1 == self.fail_at:
            raise Interrupted("interrupted")
        return super().features(x)


class ScaleTransform:
    """uint8 (3, H, W) -> float in [0, 1], minus 0.5; a transform with a stable repr."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.float() / 255.0 - 0.5

    def __repr__(self) -> str:
        return "ScaleTransform()"


class TinyImages(Dataset):
    """``n`` random uint8 8x8 RGB images with labels ``i % NUM_CLASSES``; has a fingerprint."""

    def __init__(self, n: int = 50, seed: int = 0, transform=None, fingerprinted: bool = True):
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 3, 8, 8), generator=gen, dtype=torch.uint8)
        self.labels = torch.arange(n) % NUM_CLASSES
        self.transform = ScaleTransform() if transform is None else transform
        self.name = f"tiny{n}"
        self.seed = seed
        if not fingerprinted:
            self.fingerprint = None  # type: ignore[assignment]

    def fingerprint(self) -> str:
        return hashlib.sha1(self.images.numpy().tobytes()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def _slow(cache_dir: str) -> None:
    """Extract 60 rows in chunks of 4 with a slow model (about 8 s): meant to be killed."""
    from shapeood.features import extract

    extract(
        TinyFeatureModel(delay=0.25),
        TinyImages(60),
        batch_size=2,
        chunk_size=4,
        cache=cache_dir,
        progress=False,
    )


def _dist_slow(cache_dir: str) -> None:
    """Extract 60 rows in chunks of 4 on 2 ranks with a slow model: meant to be killed."""
    import torch.distributed as dist

    from shapeood.features import extract

    dist.init_process_group("gloo")
    extract(
        TinyFeatureModel(delay=0.25),
        TinyImages(60),
        batch_size=2,
        chunk_size=4,
        cache=cache_dir,
        progress=False,
    )
    dist.destroy_process_group()


def _dist(cache_dir: str, out_dir: str) -> None:
    """Extract under torch.distributed (gloo): a cold run, then a warm one; save both."""
    import torch.distributed as dist

    from shapeood.features import extract

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    out = Path(out_dir)
    model = TinyFeatureModel()
    data = TinyImages(45)
    cold = extract(model, data, batch_size=4, chunk_size=8, cache=cache_dir, progress=False)
    cold_calls, cold_rows = model.calls, model.rows
    model.calls = model.rows = 0
    warm = extract(model, data, batch_size=4, chunk_size=8, cache=cache_dir, progress=False)
    warm_calls = model.calls
    nocache = extract(model, data, batch_size=4, chunk_size=8, cache=False, progress=False)
    torch.save(
        {
            "cold": (cold.features.clone(), cold.logits.clone(), cold.labels.clone()),
            "warm": (warm.features.clone(), warm.logits.clone(), warm.labels.clone()),
            "nocache": (nocache.features, nocache.logits, nocache.labels),
            "cold_rows": cold_rows,
            "cold_calls": cold_calls,
            "warm_calls": warm_calls,
            "meta_key": cold.meta["key"],
        },
        out / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1] == "slow":
        _slow(sys.argv[2])
    elif sys.argv[1] == "distslow":
        _dist_slow(sys.argv[2])
    elif sys.argv[1] == "dist":
        _dist(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
