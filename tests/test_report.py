"""Report files: CSV/JSON round trip, OpenOOD per-method CSV, Markdown, self-contained HTML."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

import shapeood as so
from report_helpers import make_run
from shapeood import metrics
from shapeood.evaluation import save_score_file
from shapeood.report import (
    aggregate,
    best_cells,
    edge_warnings,
    format_summary,
    format_table,
    fpr95_point,
    load_results,
    markdown_table,
    method_styles,
    roc_points,
    summary_frame,
    summary_latex,
    summary_markdown,
    write_report,
)

SETS = [("tin", "near"), ("nearood", "near"), ("mnist", "far"), ("farood", "far")]


def _results() -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(0)
    rows, scores = [], {}
    for method, shaped in (("energy", math.nan), ("ash_s", 91.23456789012345)):
        scores[method] = {"id": rng.normal(1, 1, 60), "tin": rng.normal(0, 1, 50)}
        scores[method]["mnist"] = rng.normal(-1, 1, 40)
        for dataset, group in SETS:
            rows.append(
                {
                    "method": method, "dataset": dataset, "FPR@95": rng.uniform(0, 100),
                    "AUROC": rng.uniform(50, 100), "AUPR_IN": rng.uniform(0, 100),
                    "AUPR_OUT": rng.uniform(0, 100), "ACC": 92.5, "group": group,
                    "ACC_shaped": shaped, "FPR@95_classic": rng.uniform(0, 100),
                    "fpr_convention": "openood", "params": json.dumps({"percentile": 90}),
                    "fitted": "{}", "n_id": 60, "n_ood": 50,
                }
            )  # fmt: skip
    df = pd.DataFrame(rows)
    df.attrs.update(
        benchmark="toy", model="toy_net", fpr_convention="openood", aps=True,
        aps_choices={"ash_s": {"percentile": 90}}, notes=["a note"],
    )  # fmt: skip
    return df, scores


def test_csv_and_json_round_trip(tmp_path):
    df, scores = _results()
    written = write_report(df, tmp_path, scores=scores)
    from_csv = load_results(written["csv"])
    pd.testing.assert_frame_equal(from_csv, df)  # floats bit-exact, NaN kept, ints kept
    from_json = load_results(written["json"])
    pd.testing.assert_frame_equal(from_json, df)
    assert from_json.attrs == df.attrs
    assert from_csv.attrs["fpr_convention"] == "openood"
    # the CSV alone (no JSON beside it) still names its convention
    lone = tmp_path / "lone" / "r.csv"
    lone.parent.mkdir()
    lone.write_bytes(written["csv"].read_bytes())
    assert load_results(lone).attrs == {"fpr_convention": "openood"}


def test_openood_csv_layout_and_markdown(tmp_path):
    df, _ = _results()
    written = write_report(df, tmp_path)
    header = written["method_csv/ash_s"].read_text().splitlines()[0]
    assert header == "dataset,FPR@95,AUROC,AUPR_IN,AUPR_OUT,ACC"
    combined = written["csv"].read_text().splitlines()[0].split(",")
    assert combined[:7] == ["method", "dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]
    md = markdown_table(df)
    assert md.splitlines()[0].startswith("| method | dataset | FPR@95 |")
    assert "**nearood**" in md and len(md.splitlines()) == 2 + len(df)
    text = format_table(df)
    assert "FPR@95 convention: openood" in text and "ash_s" in text
    assert "hist/tin" not in written  # no scores, no plots


def test_html_is_self_contained(tmp_path):
    df, scores = _results()
    save_score_file(tmp_path / "scores.npz", scores)
    written = write_report(df, tmp_path / "out", scores=tmp_path / "scores.npz")
    page = written["html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "<script" not in page and "http" not in page
    assert len(sources) == 4  # histograms and ROC for tin and mnist
    png = base64.b64decode(sources[0].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "toy_net" in page and "a note" in page and "percentile" in page
    for key in ("hist/tin", "roc/tin", "hist/mnist", "roc/mnist"):
        assert written[key].read_bytes()[:4] == b"\x89PNG"


def test_roc_points_are_id_positive():
    fpr, tpr = roc_points(np.array([3.0, 2.0]), np.array([1.0, 0.0]))
    # perfect separation: all ID accepted before any OOD
    assert tpr[fpr == 0].max() == 1.0


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results file"):
        load_results(tmp_path / "missing.csv")
    bad = tmp_path / "x.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        load_results(bad)
    with pytest.raises(ValueError, match="results must be"):
        write_report(42, tmp_path)
    df, _ = _results()
    with pytest.raises(ValueError, match="scores must be"):
        write_report(df, tmp_path, scores=[1, 2])


# ----------------------------------------------------------------------------- aggregation

METHODS = ["msp", "energy", "scale", "himplos"]


def _three_runs():
    return [make_run(METHODS, seed=s, model=f"net{s}")[0] for s in range(3)]


def test_aggregate_is_mean_and_population_std_per_cell():
    runs = _three_runs()
    runs[2] = runs[2].iloc[::-1].reset_index(drop=True)  # rows matched by key, not position
    agg = so.report.aggregate(runs)
    assert agg["method"].tolist() == runs[0]["method"].tolist()
    assert agg["dataset"].tolist() == runs[0]["dataset"].tolist()
    keyed = [r.set_index(["method", "dataset"]) for r in runs]
    for column in ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC", "FPR@95_classic"):
        keys = list(zip(agg["method"], agg["dataset"], strict=True))
        values = np.stack([k.loc[keys][column] for k in keyed])
        np.testing.assert_allclose(agg[column], values.mean(0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(agg[column + "_std"], values.std(0, ddof=0), atol=1e-12)
        assert not np.allclose(values.std(0, ddof=0), values.std(0, ddof=1))
    assert agg["ACC_shaped"].isna().sum() == runs[0]["ACC_shaped"].isna().sum()
    assert agg["n_id"].tolist() == runs[0]["n_id"].tolist()
    assert agg.attrs["n_runs"] == 3 and agg.attrs["run_labels"] == ["net0", "net1", "net2"]
    assert agg.attrs["plain_accuracy"] == 91.0
    assert agg.attrs["plain_accuracy_std"] == pytest.approx(np.std([90, 91, 92]))
    assert [r["aps_choices"] for r in agg.attrs["runs"]] == [r.attrs["aps_choices"] for r in runs]


def test_aggregate_of_known_values_prints_mean_pm_std():
    runs = _three_runs()
    row = (runs[0]["method"] == "msp") & (runs[0]["dataset"] == "nearood")
    for run, value in zip(runs, (77.80, 81.78, 85.76), strict=True):
        run.loc[row, "AUROC"] = value
    agg = aggregate(runs)
    summary = summary_frame(agg)
    assert summary.loc["msp", "near AUROC"] == pytest.approx(81.78)
    assert summary.loc["msp", "near AUROC_std"] == pytest.approx(np.std([77.80, 81.78, 85.76]))
    assert "81.78 ± 3.25" in format_summary(agg)
    assert "81.78 ± 3.25" in summary_markdown(agg)
    assert r"81.78 $\pm$ 3.25" in summary_latex(agg)


def test_aggregate_refuses_mismatched_runs():
    runs = _three_runs()
    with pytest.raises(ValueError, match="other \\(method, dataset\\) rows"):
        aggregate([runs[0], runs[1][runs[1]["method"] != "msp"]])
    classic = runs[1].copy()
    classic.attrs["fpr_convention"] = "classic"
    with pytest.raises(ValueError, match="different FPR@95 conventions"):
        aggregate([runs[0], classic])
    with pytest.raises(ValueError, match="already aggregated"):
        aggregate([aggregate(runs), runs[0]])
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])
    with pytest.raises(ValueError, match="DataFrames"):
        aggregate([runs[0], "x"])
    same = aggregate([runs[0], runs[0]])  # one checkpoint twice: labels stay distinct, std 0
    assert same.attrs["run_labels"] == ["net0#1", "net0#2"]
    assert (same["AUROC_std"] == 0).all()


def test_summary_one_row_per_method_best_marked():
    df, _ = make_run(METHODS)
    summary = summary_frame(df)
    assert summary.index.tolist() == METHODS
    assert list(summary.columns) == [
        "near FPR@95", "near AUROC", "far FPR@95", "far AUROC", "ID ACC"
    ]  # fmt: skip
    best = best_cells(summary)
    near = df[df["dataset"] == "nearood"].set_index("method")
    assert best["near AUROC"] == {near["AUROC"].round(2).idxmax()}
    assert best["far FPR@95"] == {
        df[df["dataset"] == "farood"].set_index("method")["FPR@95"].round(2).idxmin()
    }
    assert summary.loc["msp", "ID ACC"] == 89.0 and summary.loc["energy", "ID ACC"] == 90.0
    md = summary_markdown(df)
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(METHODS)
    assert md.count("**") == 2 * 4  # one bold cell per OOD column (no ties here)
    text = format_summary(df)
    rows = text.splitlines()[1 : 1 + len(METHODS)]
    assert sum(r.count(" *") for r in rows) == 4 and "FPR@95 convention: openood" in text
    tex = summary_latex(df)
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){2-3}", "Near-OOD"):
        assert token in tex
    assert tex.count(r"\textbf{") == 4 and "max\\_logit" not in tex
    assert summary_latex(make_run(["max_logit", "ash_s"])[0]).count(r"\_") >= 2


def test_marker_sits_at_the_tables_fpr95():
    rng = np.random.default_rng(3)
    id_s = np.round(rng.normal(1, 1, 301), 1)  # ties on purpose
    ood_s = np.round(rng.normal(0, 1, 257), 1)
    for convention in ("openood", "classic", "nearest"):
        x, y = fpr95_point(id_s, ood_s, convention)
        assert x == pytest.approx(metrics.fpr_at_95(id_s, ood_s, convention=convention))
        assert 0.9 < y <= 1.0
    x, y = fpr95_point(id_s, ood_s, "openood")
    fpr, tpr = so.report.roc_points(id_s, ood_s, "openood")
    assert any(np.isclose(fpr, x) & np.isclose(tpr, y)) and y >= 0.95


def test_sixteen_methods_look_distinct():
    styles = method_styles([f"m{i}" for i in range(20)])
    colours = [tuple(s["color"]) for s in styles.values()]
    assert len(set(colours)) == 20
    pairs = {(tuple(s["color"]), s["linestyle"]) for s in method_styles(
        [f"m{i}" for i in range(80)]).values()}  # fmt: skip
    assert len(pairs) == 80
    assert len({s["linestyle"] for s in styles.values()}) == 4


def test_edge_warnings():
    grid = [{"percentile": p, "auroc": a, "best": False} for p, a in ((70, 0.8), (80, 0.9),
                                                                       (90, 0.85))]  # fmt: skip
    grid[1]["best"] = True
    assert edge_warnings("scale", grid) == []
    grid[1]["best"], grid[2]["best"] = False, True
    (warning,) = edge_warnings("scale", grid)
    assert "percentile=90" in warning and "largest" in warning


def test_aggregated_report_files(tmp_path):
    runs = _three_runs()
    _, scores = make_run(METHODS, seed=0)
    written = write_report(aggregate(runs), tmp_path, scores=scores, runs=runs)
    page = written["html"].read_text()
    assert '<table class="meta">' in page and "<pre>" not in page
    summary = page.split('id="summary"', 1)[1].split("</table>", 1)[0]
    assert summary.count("<tr>") == 1 + len(METHODS) and " ± " in summary
    assert page.count("<details>") >= len(METHODS)
    assert "Runs" in page and "net2" in page and "one run: net0" in page
    for method in METHODS:
        assert written[f"aps/{method}"].read_bytes()[:4] == b"\x89PNG"
    assert 'class="warn"' in page  # himplos' chosen p=30 is the edge of its grid
    for i in range(3):
        assert written[f"per_run/net{i}"].is_file()
    back = load_results(written["json"])
    assert back.attrs["n_runs"] == 3 and "AUROC_std" in back.columns
    tex = written["latex"].read_text()
    assert tex.count(r"$\pm$") >= 4 * len(METHODS)
    md = written["markdown"].read_text()
    assert "## Summary" in md and " ± " in md
    header = written["method_csv/msp"].read_text().splitlines()[0]
    assert header == "dataset,FPR@95,AUROC,AUPR_IN,AUPR_OUT,ACC"
    from PIL import Image

    with Image.open(written["roc/tin"]) as image:
        assert round(image.info["dpi"][0]) == 144


def test_report_command_aggregates_run_folders(tmp_path, capsys):
    from shapeood.cli import main

    folders = []
    for seed in range(3):
        df, scores = make_run(METHODS, seed=seed, model="same_net", n_id=60, n_ood=50)
        del df.attrs["aps_tables"]  # no grid figures: keeps the test quick
        folder = tmp_path / f"seed{seed}"
        write_report(df, folder)
        save_score_file(folder / "scores.npz", scores)
        folders.append(str(folder))
    assert main(["report", *folders, "--out", str(tmp_path / "agg")]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "APS choices per run" in out and "seed2:" in out
    assert len([line for line in out.splitlines() if line.startswith(tuple(METHODS))]) == 4
    agg = load_results(tmp_path / "agg")
    assert agg.attrs["run_labels"] == ["seed0", "seed1", "seed2"]
    runs = [load_results(f) for f in folders]
    pd.testing.assert_series_equal(aggregate(runs)["AUROC_std"], agg["AUROC_std"])
    assert sorted(p.name for p in (tmp_path / "agg" / "per_run").iterdir()) == [
        "seed0.csv", "seed1.csv", "seed2.csv"
    ]  # fmt: skip
    assert "data:image/png;base64," in (tmp_path / "agg" / "report.html").read_text()
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "no results file" in capsys.readouterr().err


def test_methods_on_fewer_samples_are_flagged_not_marked_best():
    df, _ = make_run(METHODS)
    best = df[df["dataset"] == "nearood"].set_index("method")["AUROC"].idxmax()
    df.loc[df["method"] == best, "n_id"] = 32  # as ODIN's capped sets
    summary = summary_frame(df)
    assert summary.attrs["fewer_samples"] == {best: "32 ID / 100 per OOD set"}
    assert best not in best_cells(summary)["near AUROC"]
    text = format_summary(df)
    assert f"{best} †" in text and "not marked best" in text
