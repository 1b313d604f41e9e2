"""Progress output (stage lines, bars) and the shared CLI options."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from shapeood import progress
from shapeood.cli import build_parser
from shapeood.cli._options import OPTIONS, resolve_device


@pytest.fixture(autouse=True)
def _loud():
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


def test_log_bar_writes_plain_lines_with_rate_and_eta():
    stream = io.StringIO()
    bar = progress.LogBar(total=100, desc="extract toy", unit="img", stream=stream, every_s=0.0)
    bar.update(40)
    bar.update(60)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].endswith("extract toy: start, 0/100 img (0%)")
    assert "40/100 img (40%)" in lines[1] and "img/s" in lines[1] and "ETA" in lines[1]
    assert "done, 100/100 img (100%)" in lines[-1]


def test_bar_is_plain_when_stderr_is_not_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with progress.bar(10, "extract x") as bar:
        assert isinstance(bar, progress.LogBar)
        bar.update(10)
    progress.stage("fit react")
    assert "extract x: done" in stream.getvalue()
    assert "fit react" in stream.getvalue()


def test_quiet_silences_bars_and_stages(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    progress.set_quiet(True)
    bar = progress.bar(10, "extract x")
    assert isinstance(bar, progress.NullBar)
    bar.update(3)
    bar.close()
    progress.stage("fit react")
    progress.set_quiet(False)
    progress.stage("shown", quiet=True)  # a call's own quiet= wins
    assert progress.bar(5, "x", progress=False).__class__ is progress.NullBar
    assert stream.getvalue() == ""


def test_shared_flags_have_one_default_in_every_command():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    seen: dict[str, set] = {}
    for name, command in commands.items():
        for action in command._actions:
            if action.dest in OPTIONS and name != "train":  # train takes its recipe's values
                seen.setdefault(action.dest, set()).add(repr(action.default))
        dests = {a.dest for a in command._actions}
        assert {"quiet", "debug"} <= dests, name
    assert seen["device"] == {"'auto'"}
    assert seen["batch_size"] == {"256"}
    assert all(len(defaults) == 1 for defaults in seen.values()), seen


def test_resolve_device():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shapeood.cli", *argv],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )  # fmt: skip


def test_extract_shows_progress_without_a_terminal_and_none_with_quiet(kit):
    args = ["extract", "--model", "resnet20_cifar10", "--data", "cifar10_exact_sample",
            "--no-cache", "--batch-size", "8"]  # fmt: skip
    loud = _cli(*args)
    assert loud.returncode == 0, loud.stderr
    assert "\r" not in loud.stderr
    assert "device cpu (auto:" in loud.stderr.splitlines()[0] or "device cuda" in loud.stderr
    assert "extract cifar10_exact_sample: done, 20/20 img" in loud.stderr
    quiet = _cli(*args, "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert "N        20" in quiet.stdout
