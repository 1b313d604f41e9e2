"""``shapeood fit-detector`` and ``shapeood predict`` on kit images, with their clear errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shapeood.cli import main
from shapeood.cli.fit_detector import parse_params
from shapeood.deploy import OODClassifier


@pytest.fixture(scope="module")
def images(kit: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    with np.load(kit / "cifar10_test.npz", allow_pickle=False) as z:
        cifar = z["images"][::2500]  # 4 images, one per 2500 rows
    with np.load(kit / "mnist_test.npz", allow_pickle=False) as z:
        mnist = z["images"][:3]
    (root / "folder" / "sub").mkdir(parents=True)
    for i, image in enumerate(cifar):
        Image.fromarray(image).save(root / "folder" / f"c{i}.png")
    Image.fromarray(mnist[0]).save(root / "folder" / "sub" / "m0.png")
    np.savez(root / "mnist3.npz", images=mnist, labels=np.zeros(3, dtype=np.int64))
    (root / "list.txt").write_text("folder/c1.png 1\nfolder/sub/m0.png 0\n")
    return {"root": root, "cifar": cifar, "mnist": mnist}


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det") / "detector.sood"
    code = main([
        "fit-detector", "--model", "resnet20_cifar10", "--method", "scale",
        "--param", "percentile=80", "--id-data", "cifar10_offline:id_val", "--max-samples", "120",
        "--target-tpr", "0.9", "--out", str(out), "--device", "cpu", "-q",
    ])  # fmt: skip
    assert code == 0
    return out


def test_fit_detector_writes_a_loadable_file(detector, capsys):
    clf = OODClassifier.load(detector)
    assert clf.method == "scale" and clf.detector.percentile == 80
    assert clf.target_tpr_ == 0.9 and clf.n_id_ == 120 and clf.id_accepted_rate_ >= 0.9
    assert clf.class_names[:2] == ["airplane", "automobile"]


def test_predict_csv_over_files_folders_lists_and_npz(detector, images, capsys):
    root = images["root"]
    capsys.readouterr()
    code = main(
        [
            "predict",
            str(detector),
            str(root / "folder"),
            str(root / "mnist3.npz"),
            str(root / "list.txt"),
            "--batch-size",
            "3",
            "--device",
            "cpu",
            "-q",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["path"] for r in rows][:5] == [
        *(str(root / "folder" / f"c{i}.png") for i in range(4)),
        str(root / "folder/sub/m0.png"),
    ]
    assert rows[5]["path"] == f"{root / 'mnist3.npz'}[0]"
    assert [r["path"] for r in rows[-2:]] == ["folder/c1.png", "folder/sub/m0.png"]
    assert list(rows[0]) == ["path", "label", "class_name", "score", "is_ood"]
    clf = OODClassifier.load(detector)
    ref = clf.predict([*images["cifar"], images["mnist"][0], *images["mnist"]])
    np.testing.assert_allclose([float(r["score"]) for r in rows[:8]], ref.scores, rtol=1e-5)
    assert [r["is_ood"] == "1" for r in rows[:8]] == ref.is_ood.tolist()
    assert [r["class_name"] for r in rows[:8]] == ref.label_names


def test_predict_json_lines_to_a_file(detector, images, tmp_path):
    out = tmp_path / "rows.jsonl"
    code = main(
        [
            "predict",
            str(detector),
            str(images["root"] / "mnist3.npz"),
            "--format",
            "jsonl",
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and set(records[0]) == {
        "path",
        "label",
        "class_name",
        "score",
        "is_ood",
    }
    assert isinstance(records[0]["is_ood"], bool) and isinstance(records[0]["score"], float)


def _error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shapeood: error: "), err
    return err[0]


def test_clear_one_line_errors(detector, images, tmp_path, capsys):
    assert "no such image" in _error(capsys, ["predict", str(detector), "nope.png", "-q"])
    junk = tmp_path / "junk.sood"
    junk.write_bytes(b"not a zip")
    assert "not a shapeood detector file" in _error(capsys, ["predict", str(junk), "x.png", "-q"])
    assert "not a shapeood detector file" in _error(
        capsys, ["predict", str(images["root"] / "mnist3.npz"), "x.png", "-q"]
    )
    assert "detector file not found" in _error(capsys, ["predict", "missing.sood", "x", "-q"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    assert "cannot read image" in _error(capsys, ["predict", str(detector), str(bad), "-q"])
    notes = tmp_path / "notes.doc"
    notes.write_text("x")
    assert "is not an image" in _error(capsys, ["predict", str(detector), str(notes), "-q"])
    (tmp_path / "empty").mkdir()
    assert "holds no image files" in _error(
        capsys, ["predict", str(detector), str(tmp_path / "empty"), "-q"]
    )
    assert "cannot resolve model" in _error(capsys, [
        "fit-detector", "--model", "no_such_model", "--id-data", "cifar10_test",
        "--out", str(tmp_path / "x.sood"), "-q",
    ])  # fmt: skip


def test_wrong_model_weights_are_refused(images, tmp_path, capsys):
    clf = OODClassifier("resnet20_cifar10", method="energy")
    with torch.no_grad():
        clf.model.linear.bias.add_(0.5)  # no longer the kit's weights
    clf.fit(images["cifar"])
    path = clf.save(tmp_path / "tuned.sood", include_model=False)  # rebuilt from the spec
    message = _error(capsys, ["predict", str(path), str(images["root"] / "mnist3.npz"), "-q"])
    assert "differ from those the detector was fitted with" in message


def test_param_parsing():
    assert parse_params(["percentile=90", "scale.score_fn=msp"], "scale") == {
        "percentile": 90,
        "score_fn": "msp",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["percentile"], "scale")
    with pytest.raises(ValueError, match="names method 'react'"):
        parse_params(["react.percentile=90"], "scale")


def test_architecture_and_weights_file_without_stored_weights(kit, images, tmp_path, capsys):
    out = tmp_path / "light.sood"
    code = main([
        "fit-detector", "--model", "resnet20_cifar", "--weights",
        str(kit / "weights_cifar10_resnet20_akamaster.npz"), "--method", "energy",
        "--id-data", "cifar10_offline:id_val", "--max-samples", "40", "--no-weights",
        "--out", str(out), "-q",
    ])  # fmt: skip
    assert code == 0
    loaded = OODClassifier.load(out)  # rebuilt from --model and --weights, digest checked
    assert loaded.model_spec == "resnet20_cifar" and loaded.n_id_ == 40
    assert len(loaded.predict(images["mnist"])) == 3
