"""Several checkpoints, one table: ``evaluate`` over a list of models and ``eval --model`` x N."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import shapeood as so
from shapeood.cli import main
from shapeood.evaluation import run_pairs

MODELS = ["resnet20_cifar10", "resnet32_cifar10"]
SAMPLES = 40


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature cache for the module: the CLI test reuses the API test's features."""
    return tmp_path_factory.mktemp("cache")


def test_run_pairs():
    assert run_pairs(["a", "b"]) == [("a", None), ("b", None)]
    assert run_pairs("m", ["w1", "w2", "w3"]) == [("m", "w1"), ("m", "w2"), ("m", "w3")]
    assert run_pairs(["a", "b"], ["x", "y"]) == [("a", "x"), ("b", "y")]
    with pytest.raises(ValueError, match="one weights entry per model"):
        run_pairs(["a", "b"], ["x", "y", "z"])


def test_evaluate_a_list_of_models_aggregates_the_runs(kit, cache):
    options = dict(
        methods="energy,scale", aps=True, cache=cache, progress=False,
        max_samples=SAMPLES, batch_size=64,
    )  # fmt: skip
    agg = so.evaluate(MODELS, "cifar10_offline", **options)
    scores = agg.attrs["run_scores"]
    singles = [so.evaluate(m, "cifar10_offline", **options) for m in MODELS]
    expected = so.report.aggregate(singles, labels=MODELS)
    for column in ("FPR@95", "AUROC", "AUROC_std", "FPR@95_std", "ACC", "ACC_std"):
        np.testing.assert_allclose(agg[column], expected[column])
    assert (agg["AUROC_std"] > 0).any()
    assert agg.attrs["run_labels"] == MODELS and len(scores) == 2
    runs = agg.attrs["runs"]
    assert [r["aps_choices"] for r in runs] == [s.attrs["aps_choices"] for s in singles]
    pd.testing.assert_frame_equal(agg.attrs["run_tables"][1], singles[1].table)
    assert set(agg.scores) == {"energy", "scale"}  # the first run's, for the plots


def test_eval_command_with_repeated_model(kit, cache, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SHAPEOOD_CACHE", str(cache))
    out = tmp_path / "three"
    base = [
        "eval",
        "--benchmark",
        "cifar10_offline",
        "--methods",
        "energy,scale",
        "--aps",
        "--max-samples",
        str(SAMPLES),
        "--batch-size",
        "64",
        "--out",
        str(out),
        "--quiet",
    ]
    argv = list(base)
    for model in MODELS:
        argv += ["--model", model]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "±" in text and "over 2 runs" in text
    assert "resnet32_cifar10:" in text  # APS choices per run
    assert {p.name for p in (out / "per_run").iterdir()} == {f"{m}.csv" for m in MODELS}
    assert {p.name for p in (out / "scores").iterdir()} == {f"{m}.npz" for m in MODELS}
    page = (out / "report.html").read_text()
    assert "APS choices per run" in page and "resnet20_cifar10, resnet32_cifar10" in page
    assert so.report.load_results(out).attrs["n_runs"] == 2
    bad = [*base, "--model", "a", "--model", "b", "--weights", "x", "--weights", "y",
           "--weights", "z"]  # fmt: skip
    assert main(bad) == 2
    assert "one --weights per --model" in capsys.readouterr().err
