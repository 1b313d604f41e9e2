"""The ``shapeood`` command through a subprocess: help texts, listings, errors, eval + report."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from shapeood.cli import main
from shapeood.detectors import list_detectors

# what the console script ``shapeood`` runs
LAUNCH = "import sys; from shapeood.cli import main; sys.exit(main())"


def _shapeood(*args: str, env: dict | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """In-process run of the same entry point (fast; the subprocess tests cover the launch)."""
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse: --help and usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_through_the_command():
    top = _shapeood("--help")
    assert top.returncode == 0
    for command in ("eval", "list", "report", "demo"):
        assert command in top.stdout
    result = _shapeood("eval", "--help")
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout and "--aps" in result.stdout


@pytest.mark.parametrize("command", ["eval", "report", "demo", "list"])
def test_every_command_has_a_teaching_help(capsys, command):
    code, out, _ = _main(capsys, command, "--help")
    assert code == 0
    assert "examples:" in out
    if command == "demo":
        assert "ODIN" in out and "subsets" in out


def test_list_methods_benchmarks_models(capsys):
    code, methods, _ = _main(capsys, "list", "methods")
    assert code == 0
    for name in list_detectors():
        assert f"{name}:" in methods
    assert "percentile=90" in methods and "APS grid" in methods
    assert "cifar10_offline" in _main(capsys, "list", "benchmarks")[1]
    assert "densenet100_cifar10" in _main(capsys, "list", "models")[1]


def test_bad_input_gives_a_clear_error_without_traceback(tmp_path, capsys):
    env = {"SHAPEOOD_CACHE": str(tmp_path)}
    bad_bench = _shapeood(
        "eval", "--benchmark", "no_such_bench", "--model", "resnet20_cifar10", env=env
    )
    assert bad_bench.returncode == 2
    assert "unknown benchmark" in bad_bench.stderr and "Traceback" not in bad_bench.stderr
    code, _, err = _main(
        capsys, "eval", "--benchmark", "cifar10_offline", "--model", "resnet20_cifar10",
        "--param", "percentile=3",
    )  # fmt: skip
    assert code == 2 and "METHOD.PARAM=VALUE" in err
    code, _, err = _main(capsys, "report", str(tmp_path / "nothing.csv"), "--out", str(tmp_path))
    assert code == 2 and "no results file" in err
    assert _main(capsys, "list", "everything")[0] == 2


def test_eval_then_report(kit, tmp_path):
    env = {"SHAPEOOD_CACHE": str(tmp_path / "cache"), "SHAPEOOD_DATA": str(kit)}
    out = tmp_path / "run"
    result = _shapeood(
        "eval", "--benchmark", "cifar10_offline", "--model", "resnet20_cifar10",
        "--methods", "energy,ash_s", "--aps", "--max-samples", "40", "--batch-size", "64",
        "--param", "energy.temperature=1.0", "--out", str(out), "--quiet", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "FPR@95 convention: openood" in result.stdout
    assert "APS choices" in result.stdout and "ash_s" in result.stdout
    for name in ("results.csv", "results.json", "results.md", "report.html", "scores.npz"):
        assert (out / name).is_file(), name
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["method"].unique()) == ["ash_s", "energy"]
    assert set(df["dataset"]) == {"tin", "nearood", "mnist", "texture", "farood"}

    again = _shapeood("report", str(out / "results.json"), "--out", str(tmp_path / "re"))
    assert again.returncode == 0, again.stderr
    page = (tmp_path / "re" / "report.html").read_text()
    assert "data:image/png;base64," in page  # scores.npz beside the results gives the plots
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "re" / "results.csv"), df)


@pytest.mark.parametrize("argv", [["eval"], ["demo", "--max-samples", "x"]])
def test_argument_errors(capsys, argv):
    code, _, err = _main(capsys, *argv)
    assert code == 2
    assert "usage:" in err


def test_the_program_exits_fast_with_main_status_and_complete_output(tmp_path, capsys):
    """``python -m shapeood.cli`` (the console script's ``entry``) flushes everything it printed
    and exits with ``main``'s status, also into a pipe closed early."""
    env = {**os.environ, "SHAPEOOD_CACHE": str(tmp_path)}
    program = [sys.executable, "-m", "shapeood.cli"]
    ok = subprocess.run(
        [*program, "list", "methods"], capture_output=True, text=True, env=env, timeout=120
    )
    assert main(["list", "methods"]) == 0
    assert ok.returncode == 0 and ok.stdout == capsys.readouterr().out  # nothing left unflushed
    bad = subprocess.run(
        [*program, "eval", "--benchmark", "nope", "--model", "resnet20_cifar10"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown benchmark 'nope'" in bad.stderr
    head = subprocess.run(
        f"'{sys.executable}' -m shapeood.cli list methods | head -1",
        shell=True, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert head.returncode == 0 and head.stdout.startswith("msp") and not head.stderr
