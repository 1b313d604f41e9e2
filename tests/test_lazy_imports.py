"""A warm ``shapeood eval`` process loads only what it uses: no torchvision, scikit-learn, scipy
or matplotlib when every feature and score comes from the cache."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import torch

UNUSED_WHEN_WARM = ("torchvision", "sklearn", "scipy", "matplotlib")

# Runs the command's main() in a fresh process (the console script's entry() then only exits),
# then prints the unwanted top-level packages loaded.
WRAPPER = (
    "import sys\n"
    "from shapeood.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "assert not code, code\n"
    "names = {m.split('.')[0] for m in sys.modules}\n"
    f"print('LOADED', sorted(names & set({UNUSED_WHEN_WARM!r})))\n"
)


def _eval(cache, kit) -> subprocess.CompletedProcess:
    args = [
        "eval", "--model", "resnet20_cifar10", "--benchmark", "cifar10_offline",
        "--methods", "all", "--max-samples", "24", "--odin-max-samples", "8", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "SHAPEOOD_CACHE": str(cache), "SHAPEOOD_DATA": str(kit)}
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _loaded(done: subprocess.CompletedProcess) -> list[str]:
    line = [x for x in done.stdout.splitlines() if x.startswith("LOADED ")]
    assert line, done.stdout[-2000:]
    return ast.literal_eval(line[-1][len("LOADED ") :])


def test_warm_eval_imports_nothing_it_does_not_use(tmp_path, kit):
    cold = _eval(tmp_path / "cache", kit)
    assert "torchvision" in _loaded(cold)  # the cold run decodes and transforms images
    warm = _eval(tmp_path / "cache", kit)
    assert _loaded(warm) == []
    assert "AUROC" in warm.stdout or "auroc" in warm.stdout.lower()


def test_adapt_still_knows_torchvision_models_and_their_subclasses():
    import torchvision.models as tvm

    from shapeood.models import adapt
    from shapeood.models.adapter import _torchvision_family

    class MyResNet(tvm.ResNet):
        pass

    for model in (tvm.resnet18(num_classes=3), MyResNet(tvm.resnet.BasicBlock, [1, 1, 1, 1])):
        fm = adapt(model)
        assert (fm.layer_name, fm.map_name) == ("fc", "layer4")
    assert _torchvision_family(torch.nn.Sequential(torch.nn.Linear(2, 2))) is None


def test_cli_imports_torch_with_the_collector_paused_then_freezes_it(tmp_path):
    """In a fresh process the command imports torch once, freezes what exists (so that later
    full collections do not scan torch's objects) and leaves the collector enabled."""
    code = (
        "import gc, sys\n"
        "from shapeood.cli import main\n"
        "assert 'torch' not in sys.modules\n"
        "assert main(['cache', 'list']) == 0\n"
        "print('STATE', gc.isenabled(), gc.get_freeze_count() > 100000, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "SHAPEOOD_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "STATE True True True" in done.stdout, done.stdout[-2000:]
