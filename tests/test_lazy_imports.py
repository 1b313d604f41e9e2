"""A warm ``shapeood eval`` process loads only what it uses: no torchvision, scikit-learn, scipy
or matplotlib when every feature and score comes from the cache."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

UNUSED_WHEN_WARM = ("torchvision", "sklearn", "scipy", "matplotlib")

# Runs the command as the console script does, then prints the unwanted top-level packages loaded.
WRAPPER = (
    "import runpy, sys\n"
    "sys.argv = ['shapeood', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('shapeood.cli', run_name='__main__')\n"
    "except SystemExit as stop:\n"
    "    assert not stop.code, stop.code\n"
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
