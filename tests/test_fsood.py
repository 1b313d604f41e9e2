"""Full-spectrum OOD: metrics.ood_table against OpenOOD's semantics, and evaluate(fsood=True)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn import metrics as skm

import shapeood as so
from shapeood.data import SourceSpec, benchmark_spec, build_benchmark

SAMPLES = 40


def _openood_row(id_conf: np.ndarray, ood_conf: np.ndarray) -> list[float]:
    """OpenOOD v1.5's compute_all_metrics (OOD positive, -conf as its score), in percent."""
    conf = np.concatenate([id_conf, ood_conf])
    ood = np.concatenate([np.zeros(len(id_conf)), np.ones(len(ood_conf))])
    fpr, tpr, _ = skm.roc_curve(ood, -conf)
    fpr95 = fpr[np.argmax(tpr >= 0.95)]
    p_in, r_in, _ = skm.precision_recall_curve(1 - ood, conf)
    p_out, r_out, _ = skm.precision_recall_curve(ood, -conf)
    values = [fpr95, skm.auc(fpr, tpr), skm.auc(r_in, p_in), skm.auc(r_out, p_out)]
    return [100 * v for v in values]


def test_ood_table_follows_openood_eval_ood_with_csid():
    rng = np.random.default_rng(0)
    id_s, csid = rng.normal(1.0, 1.0, 300), {"c1": rng.normal(0.6, 1.0, 120)}
    csid["c2"] = np.round(rng.normal(0.4, 1.0, 80), 1)  # ties
    near = {"n1": rng.normal(0.0, 1.0, 200), "n2": rng.normal(0.3, 1.2, 150)}
    far = {"f1": rng.normal(-1.5, 1.0, 250), "f2": np.round(rng.normal(-1.0, 0.7, 90), 1)}
    table = so.metrics.ood_table(id_s, {"near": near, "far": far}, csid_scores=csid)
    assert list(table.index) == ["n1", "n2", "nearood", "f1", "f2", "farood"]
    assert list(table.columns) == ["FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT"]
    id_all = np.concatenate([id_s, csid["c1"], csid["c2"]])  # ID test, then every csid set
    expected = {n: _openood_row(id_all, s) for n, s in {**near, **far}.items()}
    expected["nearood"] = np.mean([expected["n1"], expected["n2"]], axis=0)
    expected["farood"] = np.mean([expected["f1"], expected["f2"]], axis=0)
    for name, row in expected.items():
        np.testing.assert_allclose(table.loc[name].to_numpy(), row, rtol=1e-9, atol=1e-9)
    plain = so.metrics.ood_table(id_s, {"near": near, "far": far})
    assert plain.loc["n1", "AUROC"] == pytest.approx(_openood_row(id_s, near["n1"])[1])
    assert plain.loc["n1", "AUROC"] != pytest.approx(table.loc["n1", "AUROC"])


def test_ood_table_conventions_and_empty_groups():
    id_s, ood = np.arange(100.0), {"near": {}, "far": {"x": np.arange(50.0) - 10}}
    table = so.metrics.ood_table(id_s, ood, convention="classic")
    assert list(table.index) == ["x", "farood"]
    assert table.loc["x", "FPR@95"] == pytest.approx(
        100 * so.metrics.fpr_at_95(id_s, ood["far"]["x"], convention="classic")
    )
    with pytest.raises(ValueError, match="'near' and 'far'"):
        so.metrics.ood_table(id_s, {"mid": {"x": id_s}})


def test_ood_table_adds_fpr_columns_of_other_conventions():
    rng = np.random.default_rng(4)
    id_s = np.round(rng.normal(1.0, 1.0, 300), 1)  # rounded: ties within and across sets
    ood = {"near": {"a": np.round(rng.normal(0.0, 1.0, 120), 1)},
           "far": {"b": np.round(rng.normal(-1.0, 1.0, 90), 1), "c": id_s[:50].copy()}}  # fmt: skip
    both = so.metrics.ood_table(id_s, ood, also_fpr_under=("classic", "nearest"))
    openood = so.metrics.ood_table(id_s, ood)
    assert list(both.columns) == [*openood.columns, "FPR@95_classic", "FPR@95_nearest"]
    np.testing.assert_array_equal(both[list(openood.columns)].to_numpy(), openood.to_numpy())
    for name in ("classic", "nearest"):
        alone = so.metrics.ood_table(id_s, ood, convention=name)
        np.testing.assert_array_equal(both[f"FPR@95_{name}"].to_numpy(), alone["FPR@95"].to_numpy())
    with pytest.raises(ValueError, match="convention"):
        so.metrics.ood_table(id_s, ood, also_fpr_under=("sklearn",))


def corrupted_copy(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """A covariate-shifted copy: lower contrast plus Gaussian noise (sigma 20 grey levels)."""
    noise = np.random.default_rng(seed).normal(0.0, 20.0, images.shape)
    shifted = 0.6 * images.astype(np.float64) + 0.4 * 128 + noise
    return np.clip(np.round(shifted), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fs_bench(kit, tmp_path_factory):
    spec = benchmark_spec("cifar10_offline", kit)
    rows = np.asarray(spec.id_test.rows[:SAMPLES])
    with np.load(kit / "cifar10_test.npz") as z:
        images, labels = z["images"][rows], z["labels"][rows]
    path = tmp_path_factory.mktemp("csid") / "cifar10_corrupted.npz"
    np.savez(path, images=corrupted_copy(images), labels=labels)
    spec = dataclasses.replace(
        spec, name="cifar10_offline_fs", csid={"corrupted": SourceSpec("npz", str(path))}
    )
    return build_benchmark(spec, kit)


def test_fsood_counts_csid_sets_as_id(fs_bench, tmp_path):
    net = so.models.load_model("resnet20_cifar10")
    kwargs = dict(methods="energy,ash_s", cache=tmp_path, progress=False, max_samples=SAMPLES)
    fs = so.evaluate(net, fs_bench, fsood=True, **kwargs)
    plain = so.evaluate(net, fs_bench, **kwargs)
    assert fs.mode == "fsood" and plain.mode == "ood" and fs.attrs["mode"] == "fsood"
    assert any("full-spectrum" in note for note in fs.notes)
    assert list(fs["dataset"]) == list(plain["dataset"])
    for method in ("energy", "ash_s"):
        s = fs.scores[method]
        id_all = np.concatenate([s["id"], s["corrupted"]])
        row = fs[(fs["method"] == method) & (fs["dataset"] == "tin")].iloc[0]
        assert row["n_id"] == 2 * SAMPLES
        assert row["AUROC"] == pytest.approx(100 * so.metrics.auroc(id_all, s["tin"]))
        assert "corrupted" not in plain.scores[method]
    assert 0 <= fs.attrs["plain_accuracy"] <= 100
    assert fs.attrs["plain_accuracy"] != plain.attrs["plain_accuracy"]


def test_fsood_without_csid_sets_is_a_clear_error(kit):
    with pytest.raises(ValueError, match=r"no csid .* full-spectrum"):
        so.evaluate("resnet20_cifar10", "cifar10_offline", methods="energy", fsood=True)


def test_cli_fsood_without_csid_sets_is_one_line(kit):
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "shapeood.cli", "eval", "--benchmark", "cifar10_offline",
         "--model", "resnet20_cifar10", "--methods", "energy", "--fsood", "--no-cache"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "full-spectrum" in done.stderr and "Traceback" not in done.stderr
