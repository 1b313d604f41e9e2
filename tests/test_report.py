"""Report files: CSV/JSON round trip, OpenOOD per-method CSV, Markdown, self-contained HTML."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from shapeood.evaluation import save_score_file
from shapeood.report import format_table, load_results, markdown_table, roc_points, write_report

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
