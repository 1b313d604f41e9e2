"""ODIN over datasets (features/perturbation.py): grid sharing, passes, std rule, cache, kill -9.

Also runnable as a script (the SIGKILL test): ``python tests/test_perturbation.py slow CACHE``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from shapeood.detectors import ODIN
from shapeood.detectors.odin import OPENOOD_DATASET_STD, benchmark_std
from shapeood.errors import CacheWarning
from shapeood.features import FeatureCache
from shapeood.features.perturbation import (
    count_passes,
    perturbation_scores,
    resolve_std,
    score_inputs,
)
from shapeood.models import adapt

STD = (0.5, 0.25, 0.2)
OPENOOD_GRID = list(itertools.product([1, 10, 100, 1000], [0.0014, 0.0028]))


class CountingNet(nn.Module):
    """conv -> ReLU -> pool -> linear, counting forward and backward passes (rows)."""

    def __init__(self, seed: int = 0, delay: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 6)
        self.pretrained_cfg = {"name": "counting", "std": STD}
        self.forwards = 0
        self.backwards = 0
        self.delay = delay
        self.conv.register_full_backward_hook(self._count_backward)

    def _count_backward(self, *_):
        self.backwards += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        if self.delay:
            time.sleep(self.delay)
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class Images(Dataset):
    """``n`` seeded normalised float images with labels, a name and a fingerprint."""

    def __init__(self, n: int = 40, seed: int = 0, size: int = 8) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, size, size, generator=gen)
        self.labels = torch.arange(n) % 6
        self.name = f"images{n}"

    def fingerprint(self) -> str:
        return hashlib.sha1(self.images.numpy().tobytes()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def reference_point(net, x, temperature, noise, variant="openood", std=STD):
    """The plain algorithm, one separate forward + backward + forward per point."""
    x = x.detach().clone().requires_grad_(True)
    logits = net(x)
    loss = F.cross_entropy(logits / temperature, logits.detach().argmax(dim=1))
    (grad,) = torch.autograd.grad(loss, x)
    sign = torch.where(grad >= 0, 1.0, -1.0)
    if variant == "openood":
        sign = sign / torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        out = net(x.detach() - noise * sign) / temperature
    return torch.softmax(out, dim=1).amax(dim=1), out.argmax(dim=1)


def adapted(net):
    """The FeatureModel of a CountingNet (what the cache keys name)."""
    return adapt(net, head="fc")


def _points(grid, **extra):
    return [{"temperature": t, "noise": n, **extra} for t, n in grid]


@pytest.mark.parametrize("variant", ["openood", "react"])
def test_grid_equals_separate_runs_bit_for_bit(variant):
    net, data = CountingNet().eval(), Images(40)
    results = perturbation_scores(net, data, _points(OPENOOD_GRID, variant=variant), batch_size=16)
    for (t, n), got in zip(OPENOOD_GRID, results, strict=True):
        scores, preds = [], []
        for start in range(0, 40, 16):
            s, p = reference_point(net, data.images[start : start + 16], t, n, variant)
            scores.append(s)
            preds.append(p)
        assert torch.equal(got.scores, torch.cat(scores)), (t, n)
        assert torch.equal(got.preds, torch.cat(preds)), (t, n)
        assert torch.equal(got.labels, data.labels)
        single = ODIN(temperature=t, noise=n, variant=variant, std=STD)
        s, p = single.score_and_predict_inputs(net, data.images[:16])
        assert torch.equal(s, got.scores[:16]) and torch.equal(p, got.preds[:16])


def test_passes_per_image_full_grid_and_single_point():
    net, data = CountingNet().eval(), Images(32)
    perturbation_scores(net, data, _points(OPENOOD_GRID), batch_size=32)
    assert (net.forwards, net.backwards) == (1 + 8, 4)  # one batch
    assert count_passes(_points(OPENOOD_GRID)) == {"forward": 9, "backward": 4}
    net.forwards = net.backwards = 0
    score_inputs(ODIN(std=STD), net, data, batch_size=32)
    assert (net.forwards, net.backwards) == (2, 1)


def test_std_rule():
    net, data = CountingNet().eval(), Images(8)
    assert resolve_std(None, net, data) == STD  # the model's pretrained_cfg
    assert resolve_std((1.0, 2.0, 3.0), net, data) == (1.0, 2.0, 3.0)
    assert (
        resolve_std("benchmark", net, data, benchmark="cifar10_offline")
        == (OPENOOD_DATASET_STD["cifar10"])
    )
    assert benchmark_std("cifar100") == OPENOOD_DATASET_STD["cifar100"]
    assert benchmark_std("imagenet200_fs") == OPENOOD_DATASET_STD["imagenet200"]
    with pytest.raises(ValueError, match="std=\\(s_r, s_g, s_b\\)"):
        benchmark_std("mnist_custom")
    bare = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="neither the dataset's transform"):
        resolve_std(None, bare, data)
    with pytest.raises(ValueError, match="needs the benchmark"):
        resolve_std("benchmark", net, data)
    with pytest.raises(ValueError, match="needs the benchmark"):
        ODIN(std="benchmark").score_inputs(net, data.images)
    with pytest.raises(ValueError, match="numbers or 'benchmark'"):
        ODIN(std="cifar").score_inputs(net, data.images)


def test_std_from_the_dataset_transform():
    from torchvision.transforms import v2

    class Wrapped(Images):
        transform = v2.Compose([v2.Normalize(mean=[0, 0, 0], std=[0.3, 0.3, 0.3])])

    bare = nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert resolve_std(None, bare, Wrapped(4)) == (0.3, 0.3, 0.3)


def test_benchmark_std_reproduces_openood_scores():
    """std='benchmark' divides by CIFAR-10's std on a cifar10 benchmark, whatever the model's."""
    net, data = CountingNet().eval(), Images(16)
    (got,) = perturbation_scores(
        net, data, [{"std": "benchmark"}], benchmark="cifar10", batch_size=16
    )
    expected, _ = reference_point(
        net, data.images, 1000, 0.0014, std=OPENOOD_DATASET_STD["cifar10"]
    )
    assert torch.equal(got.scores, expected)


def test_cache_entries_listed_reused_and_cleared(tmp_path):
    net, data = CountingNet().eval(), Images(24)
    first = perturbation_scores(
        adapted(net), data, _points(OPENOOD_GRID[:4]), batch_size=8, cache=tmp_path
    )
    cache = FeatureCache(tmp_path)
    entries = cache.list()
    assert len(entries) == 4
    assert all(e.kind == "odin" and e.complete and e.num_samples == 24 for e in entries)
    assert all(e.key.startswith("odin__counting__") for e in entries)
    net.forwards = 0
    again = perturbation_scores(
        adapted(net), data, _points(OPENOOD_GRID[:4]), batch_size=8, cache=tmp_path
    )
    assert net.forwards == 0  # all four read back
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.scores, b.scores) and torch.equal(a.preds, b.preds)
    # A grid sharing two points computes only the other two (one temperature).
    net.backwards = 0
    perturbation_scores(
        adapted(net), data, _points(OPENOOD_GRID[2:6]), batch_size=24, cache=tmp_path
    )
    assert (net.forwards, net.backwards) == (1 + 2, 1)
    assert len(cache.list()) == 6
    removed = cache.clear("odin__")
    assert len(removed) == 6 and cache.list() == []


def test_weights_change_the_entry(tmp_path):
    net, data = CountingNet().eval(), Images(8)
    (a,) = perturbation_scores(adapted(net), data, [{"std": STD}], cache=tmp_path)
    with torch.no_grad():
        net.fc.weight.mul_(3.0)
    (b,) = perturbation_scores(adapted(net), data, [{"std": STD}], cache=tmp_path)
    assert len(FeatureCache(tmp_path).list()) == 2
    assert not torch.equal(a.scores, b.scores)


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_corrupt_entry_is_reported_and_recomputed(tmp_path, damage):
    net, data = CountingNet().eval(), Images(16)
    (clean,) = perturbation_scores(adapted(net), data, [{"std": STD}], cache=tmp_path)
    (entry,) = FeatureCache(tmp_path).list()
    target = entry.path / ("meta.json" if damage == "meta" else "scores.npy")
    raw = bytearray(target.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[-3] ^= 0xFF
    target.write_bytes(bytes(raw))
    net.forwards = 0
    with pytest.warns(CacheWarning, match=f"cache entry {entry.key} is corrupt"):
        (again,) = perturbation_scores(adapted(net), data, [{"std": STD}], cache=tmp_path)
    assert net.forwards == 2  # recomputed
    assert torch.equal(again.scores, clean.scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perturbation_scores(adapted(net), data, [{"std": STD}], cache=tmp_path)  # healthy again


class MarkedImages(Images):
    """Images that touch ``marker`` once the third batch (of 4) is being read."""

    def __init__(self, n: int, marker: str) -> None:
        super().__init__(n)
        self.marker = marker

    def __getitem__(self, i: int):
        if i == 8:
            Path(self.marker).touch()
        return super().__getitem__(i)


KILL_N = 80


def _slow_run(cache: str) -> None:
    net, data = CountingNet(delay=0.05).eval(), MarkedImages(KILL_N, cache + ".started")
    perturbation_scores(adapted(net), data, _points(OPENOOD_GRID[:2]), batch_size=4, cache=cache)


def test_kill_9_mid_scoring_serves_nothing_partial(tmp_path):
    """SIGKILL while scoring: no entry (or hidden leftover) is ever served; the rerun is exact."""
    cache = tmp_path / "cache"
    marker = Path(str(cache) + ".started")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, __file__, "slow", str(cache)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert marker.exists(), "the scoring run did not start within 120 s"
        os.kill(proc.pid, signal.SIGKILL)  # 18 of 20 batches (>= 1.8 s of sleeps) still to go
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert FeatureCache(cache).list() == []  # nothing listed, nothing served
    net, data = CountingNet().eval(), Images(KILL_N)
    points = _points(OPENOOD_GRID[:2])
    resumed = perturbation_scores(adapted(net), data, points, batch_size=4, cache=cache)
    fresh = perturbation_scores(net, data, points, batch_size=4, cache=None)
    for a, b in zip(resumed, fresh, strict=True):
        assert torch.equal(a.scores, b.scores) and torch.equal(a.preds, b.preds)
    assert len(FeatureCache(cache).list()) == 2


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "slow":
    _slow_run(sys.argv[2])
