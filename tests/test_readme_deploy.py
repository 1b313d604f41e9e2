"""The README's Deploy example runs as written on the kit."""

from __future__ import annotations

import os
import re
from pathlib import Path

import onnxruntime as ort

import shapeood as so

README = Path(__file__).resolve().parents[1] / "README.md"


def deploy_example() -> str:
    text = README.read_text()
    section = text.split("## Deploy\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_deploy_example_runs(kit, tmp_path, capsys, monkeypatch):
    code = deploy_example()
    assert len(code.strip().splitlines()) <= 14
    monkeypatch.setenv("SHAPEOOD_DATA", str(Path(kit).resolve()))  # the example runs elsewhere
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.strip().splitlines()
    cifar = eval(lines[0].split("?", 1)[1])
    mnist = eval(lines[1].split("?", 1)[1])
    assert len(cifar) == len(mnist) == 8
    assert sum(mnist) > sum(cifar)  # MNIST is flagged more often than CIFAR-10
    clf = so.OODClassifier.load("resnet20_scale.sood")
    assert clf.target_tpr_ == 0.95 and clf.n_id_ == 1000
    ort.InferenceSession(os.fspath("resnet20_scale.onnx"), providers=["CPUExecutionProvider"])
