"""torchrun data parallelism on CPU (gloo): two ranks end equal, and equal to one process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import TensorDataset

    from shapeood.train import fit_model


    class Net(nn.Module):
        # No BatchNorm or dropout, so that 2 x 8 samples give the gradient of 1 x 16.
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 32, 3, padding=1)
            self.fc = nn.Linear(32, 4)

        def forward(self, x):
            return self.fc(F.relu(self.conv(x)).mean((2, 3)))


    def main(out: Path, batch_size: int) -> None:
        g = torch.Generator().manual_seed(0)
        images = torch.randn(96, 3, 6, 6, generator=g)
        data = TensorDataset(images, torch.randint(0, 4, (96,), generator=g))
        torch.manual_seed(0)
        result = fit_model(Net(), data, head_name="fc", epochs=2, batch_size=batch_size, lr=0.05,
                           ish=True, progress=False, out_dir=out / "run")
        rank = dist.get_rank() if dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_initialized() else 1
        torch.save({"state": result.model.state_dict(), "history": result.history},
                   out / f"world{world}_rank{rank}.pt")


    if __name__ == "__main__":
        main(Path(sys.argv[1]), int(sys.argv[2]))
    """
)


def run_worker(script: Path, out: Path, batch_size: int, nproc: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable]
    if nproc > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    proc = subprocess.run(
        [*cmd, str(script), str(out), str(batch_size)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_cpu_ranks_match_each_other_and_one_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    (tmp_path / "ddp").mkdir()
    (tmp_path / "single").mkdir()
    run_worker(script, tmp_path / "ddp", batch_size=8, nproc=2)
    run_worker(script, tmp_path / "single", batch_size=16, nproc=1)

    rank0 = torch.load(tmp_path / "ddp" / "world2_rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "ddp" / "world2_rank1.pt", weights_only=False)
    single = torch.load(tmp_path / "single" / "world1_rank0.pt", weights_only=False)
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
        # Same global batches, summed in another order: float32 round-off only (ISH multiplies
        # the head's weight gradient by exp(S1/S2), which magnifies it a little).
        torch.testing.assert_close(value, single["state"][key], rtol=1e-4, atol=1e-5)
    # Both ranks report the global (all-reduced) epoch statistics over all 96 images.
    stats = ("epoch", "loss", "accuracy", "lr", "images", "steps")
    for a, b in zip(rank0["history"], rank1["history"], strict=True):
        assert {k: a[k] for k in stats} == {k: b[k] for k in stats}
    assert [r["images"] for r in rank0["history"]] == [96, 96]
    for ddp, one in zip(rank0["history"], single["history"], strict=True):
        assert abs(ddp["loss"] - one["loss"]) < 1e-4
    initial = torch.load(tmp_path / "ddp" / "run" / "checkpoint.pt", weights_only=False)
    assert initial["world_size"] == 2 and len(initial["rng"]) == 2
