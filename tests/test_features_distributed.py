"""Extraction under torchrun (2 CPU processes, gloo) equals the single-process result."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from features_helpers import TinyFeatureModel, TinyImages
from shapeood.features import FeatureCache, extract

HELPERS = Path(__file__).with_name("features_helpers.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_ranks_match_single_process(tmp_path):
    cache_dir, out_dir = tmp_path / "cache", tmp_path / "out"
    out_dir.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(HELPERS), "dist", str(cache_dir), str(out_dir),
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    single = extract(TinyFeatureModel(), TinyImages(45), batch_size=4, cache=False, progress=False)
    ranks = [torch.load(out_dir / f"rank{r}.pt") for r in (0, 1)]
    for res in ranks:
        for run in ("cold", "warm", "nocache"):
            features, logits, labels = res[run]
            torch.testing.assert_close(features, single.features, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(logits, single.logits, rtol=1e-6, atol=1e-7)
            assert torch.equal(labels, single.labels)
        assert res["warm_calls"] == 0  # the warm run is served by the cache
    # 45 rows in chunks of 8 = 6 chunks dealt round-robin: each rank computed 3 of them
    assert ranks[0]["cold_rows"] == 8 + 8 + 8
    assert ranks[1]["cold_rows"] == 8 + 8 + 5
    (entry,) = FeatureCache(cache_dir).list()
    assert entry.complete and entry.key == ranks[0]["meta_key"] == ranks[1]["meta_key"]
    assert entry.num_samples == 45
