"""End to end: evaluate() on small real subsets of the offline benchmark with the kit ResNet-20."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import shapeood as so
from shapeood import metrics
from shapeood.detectors import list_detectors
from shapeood.evaluation import (
    load_score_file,
    method_params,
    resolve_methods,
)
from shapeood.evaluation.inputs import prepare_dataset as _prepare_dataset
from shapeood.report import load_results, write_report

SAMPLES = 48
ODIN_SAMPLES = 10
SETS = ["tin", "nearood", "mnist", "texture", "farood"]


@pytest.fixture(scope="module")
def setup(kit, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    net = so.models.load_model("resnet20_cifar10")
    bench = so.data.get_benchmark("cifar10_offline", data_root=kit)
    df = so.evaluate(
        net, bench, methods="all", aps=True, cache=cache, batch_size=64, progress=False,
        max_samples=SAMPLES, odin_max_samples=ODIN_SAMPLES, save_scores=cache / "scores.npz",
    )  # fmt: skip
    scores = df.scores
    return {"net": net, "bench": bench, "df": df, "scores": scores, "cache": cache}


def test_rows_follow_openood_layout(setup):
    df = setup["df"]
    names = list(list_detectors())
    assert list(df["method"].unique()) == names
    for name in names:
        part = df[df["method"] == name]
        assert part["dataset"].tolist() == SETS
        near, far = part.set_index("dataset").loc[["tin"]], part.set_index("dataset")
        for col in ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "FPR@95_classic"):
            assert far.loc["nearood", col] == pytest.approx(near[col].mean())
            assert far.loc["farood", col] == pytest.approx(
                far.loc[["mnist", "texture"], col].mean()
            )
    for col in ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC", "FPR@95_classic"):
        assert df[col].between(0, 100).all(), col
    assert (df["fpr_convention"] == "openood").all()
    assert df.attrs["fpr_convention"] == "openood"
    assert df.attrs["other_fpr_convention"] == "classic"
    assert df.attrs["benchmark"] == "cifar10_offline"


def test_metrics_match_the_returned_scores(setup):
    df, scores = setup["df"], setup["scores"]
    for name in ("energy", "ash_s", "himplos", "odin"):
        for set_name in ("tin", "mnist"):
            row = df[(df["method"] == name) & (df["dataset"] == set_name)].iloc[0]
            id_s, ood_s = scores[name]["id"], scores[name][set_name]
            assert row["AUROC"] == pytest.approx(100 * metrics.auroc(id_s, ood_s))
            assert row["FPR@95"] == pytest.approx(100 * metrics.fpr_at_95(id_s, ood_s))
            classic = metrics.fpr_at_95(id_s, ood_s, convention="classic")
            assert row["FPR@95_classic"] == pytest.approx(100 * classic)
            assert row["n_id"] == len(id_s) and row["n_ood"] == len(ood_s)
    assert len(scores["energy"]["id"]) == SAMPLES
    assert len(scores["odin"]["id"]) == ODIN_SAMPLES
    stored = load_score_file(setup["cache"] / "scores.npz")
    for name, sets in scores.items():
        for set_name, values in sets.items():
            np.testing.assert_array_equal(stored[name][set_name], values)


def test_accuracy_columns(setup):
    df, bench, net = setup["df"], setup["bench"], setup["net"]
    from shapeood.models import transform_for

    transform = transform_for(net.pretrained_cfg, resize=bench.resize, crop=bench.crop)
    id_test = so.extract(
        net, _prepare_dataset(bench.id_test, transform, SAMPLES), cache=setup["cache"],
        progress=False,
    )  # fmt: skip
    plain = 100 * id_test.accuracy()
    assert np.allclose(df["ACC"], plain)
    assert df.attrs["plain_accuracy"] == pytest.approx(plain)
    assert plain > 70  # the kit ResNet-20 is a real classifier
    by_method = df.groupby("method")["ACC_shaped"].first()
    for name in ("msp", "max_logit", "energy"):
        assert math.isnan(by_method[name])
    for name in ("ash_s", "dice", "react", "odin"):
        assert 0 < by_method[name] <= 100


def test_aps_choices_and_fits(setup):
    df, bench, net = setup["df"], setup["bench"], setup["net"]
    choices = df.attrs["aps_choices"]
    for name, info in list_detectors().items():
        if name == "lhact" or info.default_sweep:
            assert name in choices, name
            table = df.attrs["aps_tables"][name]
            best = [row for row in table if row["best"]]
            assert len(best) == 1
            assert best[0]["auroc"] == max(row["auroc"] for row in table)
    # ReAct's threshold is the chosen percentile of all ID-val activations
    from shapeood.models import transform_for

    transform = transform_for(net.pretrained_cfg, resize=bench.resize, crop=bench.crop)
    id_val = so.extract(
        net, _prepare_dataset(bench.id_val, transform, SAMPLES), cache=setup["cache"],
        progress=False,
    )  # fmt: skip
    react = df[df["method"] == "react"].iloc[0]
    percentile = json.loads(react["params"])["percentile"]
    assert percentile == choices["react"]["percentile"]
    threshold = json.loads(react["fitted"])["threshold_"]
    expected = np.percentile(id_val.features.numpy().ravel(), percentile)
    assert threshold == pytest.approx(expected, rel=1e-6)


def test_result_carries_scores_grids_timings_and_notes(setup):
    df = setup["df"]
    assert isinstance(df, so.evaluation.EvaluationResult) and df.mode == "ood"
    assert isinstance(df.table, pd.DataFrame) and type(df.table) is pd.DataFrame
    assert set(df.scores) == set(list_detectors()) and set(df.scores["energy"]) >= {"id", "tin"}
    for name, grid in df.grids.items():
        assert {"auroc", "fpr95", "criterion", "best"} <= set(grid.columns), name
        np.testing.assert_allclose(grid["criterion"], grid["auroc"])  # default criterion
        assert grid["best"].sum() == 1
    assert "ash_s" in df.grids and "odin" in df.grids and "energy" not in df.grids
    assert df.timings["total_s"] >= df.timings["extraction_s"] > 0
    assert df.attrs["aps_criterion"] == "auroc"
    assert any("max_samples" in note for note in df.notes)


def test_return_scores_still_works_with_a_deprecation_warning(setup):
    with pytest.warns(FutureWarning, match="return_scores"):
        df, scores = so.evaluate(
            setup["net"], setup["bench"], methods="energy", cache=setup["cache"],
            progress=False, max_samples=SAMPLES, return_scores=True,
        )  # fmt: skip
    assert scores is df.scores


def test_fpr95_criterion_reaches_the_evaluator(setup):
    df = so.evaluate(
        setup["net"], setup["bench"], methods="scale", aps=True, criterion="fpr95",
        cache=setup["cache"], progress=False, max_samples=SAMPLES,
    )  # fmt: skip
    grid = df.grids["scale"]
    np.testing.assert_allclose(grid["criterion"], -grid["fpr95"])
    chosen = grid.loc[grid["best"], "percentile"].item()
    assert df.attrs["aps_choices"]["scale"]["percentile"] == chosen
    assert df.attrs["aps_criterion"] == "fpr95"


def test_warm_rerun_runs_no_forward_pass(setup):
    net = setup["net"]
    calls = []
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    handle = first_conv.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        net(torch.zeros(1, 3, 32, 32))
        assert calls, "the counting hook must see a forward pass"
        calls.clear()
        again = so.evaluate(
            net, setup["bench"], methods="all", aps=True, cache=setup["cache"], batch_size=64,
            progress=False, max_samples=SAMPLES, odin_max_samples=ODIN_SAMPLES,
        )  # fmt: skip
    finally:
        handle.remove()
    assert calls == []
    pd.testing.assert_frame_equal(again, setup["df"])


def test_report_round_trip_on_real_results(setup, tmp_path):
    written = write_report(setup["df"], tmp_path, scores=setup["scores"])
    for key in ("csv", "json"):
        back = load_results(written[key])
        pd.testing.assert_frame_equal(back, setup["df"].table)
    assert load_results(written["json"]).attrs == json.loads(json.dumps(setup["df"].attrs))
    method_csv = pd.read_csv(written["method_csv/ash_s"])
    assert list(method_csv.columns) == ["dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]
    assert method_csv["dataset"].tolist() == SETS
    assert {"hist/tin", "roc/tin", "hist/mnist", "roc/texture"} <= set(written)


def test_only_feature_methods_and_explicit_params(setup):
    df = so.evaluate(
        setup["net"], setup["bench"], methods="ebo,ash", cache=setup["cache"], progress=False,
        max_samples=SAMPLES, params={"ash_b": {"percentile": 70}}, fpr_convention="classic",
    )  # fmt: skip
    assert list(df["method"].unique()) == ["energy", "ash_b"]
    assert json.loads(df[df["method"] == "ash_b"].iloc[0]["params"])["percentile"] == 70
    assert (df["fpr_convention"] == "classic").all()
    assert "FPR@95_openood" in df.columns
    assert df.attrs["aps_choices"] == {}


def test_bad_inputs(setup):
    with pytest.raises(ValueError, match="unknown detector"):
        so.evaluate(setup["net"], setup["bench"], methods="nope", progress=False)
    with pytest.raises(ValueError, match="not among the methods"):
        so.evaluate(
            setup["net"], setup["bench"], methods="energy", params={"react": {"percentile": 80}}
        )
    with pytest.raises(ValueError, match="fpr_convention"):
        so.evaluate(setup["net"], setup["bench"], methods="energy", fpr_convention="odd")
    with pytest.raises(ValueError, match="unknown benchmark"):
        so.evaluate(setup["net"], "no_such_benchmark", methods="energy")
    no_val = dataclasses.replace(setup["bench"], id_val=None, ood_val=None)
    with pytest.raises(ValueError, match="APS"):
        so.evaluate(setup["net"], no_val, methods="energy", aps=True, progress=False)


def test_method_resolution_and_presets():
    assert resolve_methods("all") == list(list_detectors())
    assert resolve_methods("ebo, mls,energy") == ["energy", "max_logit"]
    assert method_params("ash_s", "cifar") == {"percentile": 95}
    assert method_params("ash_s", "imagenet") == {"percentile": 90}
    assert method_params("himplos", "cifar") == {"percentile": 60, "threshold": 1.6}
    assert method_params("lhact", "cifar") == {"th_percentile": 95, "tl_percentile": 35}
    assert method_params("lhact", "imagenet") == {}
    assert method_params("lhact", "cifar", {"th": 2.0, "tl": 0.1}) == {"th": 2.0, "tl": 0.1}
    assert method_params("react", "cifar", {"percentile": 80}) == {"percentile": 80}


def test_lhact_alone_fits_its_percentiles_on_id_val(setup):
    bench, net = setup["bench"], setup["net"]
    df = so.evaluate(
        net, bench, methods="lhact", cache=setup["cache"], progress=False, max_samples=SAMPLES
    )
    fitted = json.loads(df.iloc[0]["fitted"])
    from shapeood.models import transform_for

    transform = transform_for(net.pretrained_cfg, resize=bench.resize, crop=bench.crop)
    id_val = so.extract(
        net, _prepare_dataset(bench.id_val, transform, SAMPLES), cache=setup["cache"],
        progress=False,
    )  # fmt: skip
    values = id_val.features.numpy().ravel()
    assert fitted["th_"] == pytest.approx(np.percentile(values, 95), rel=1e-6)
    assert fitted["tl_"] == pytest.approx(np.percentile(values, 35), rel=1e-6, abs=1e-7)
