"""Benchmark files: strict validation, path resolution, check/template, and the examples/ files
evaluated on the offline kit."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from shapeood.cli import main
from shapeood.data import get_benchmark
from shapeood.data.benchmarks.files import (
    SOURCE_KEYS,
    TEMPLATE,
    TOP_KEYS,
    BenchmarkFileError,
    read_benchmark_file,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BASE = "id: {test: {npz: kit:cifar10_exact_sample.npz}}\nood: {far: {m: kit:mnist_test.npz}}\n"


def _write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "b.yaml"
    file.write_text(textwrap.dedent(text))
    return file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resize: big\n" + BASE, r"resize: expected a whole number, got 'big'"),
        ("resize: true\n" + BASE, r"resize: expected a whole number"),
        ("resize: 32\ncrop: 40\n" + BASE, r"crop: 40 is larger than resize \(32\)"),
        ("resze: 32\n" + BASE, r"resze: unknown key; did you mean 'resize'\?"),
        ("family: imagnet\n" + BASE, r"family: must be one of .* did you mean 'imagenet'\?"),
        (
            "id: {test: {npz: a.npz, rows: '123'}}\nood: {far: {m: b.npz}}",
            r"id.test.rows: expected a list of row numbers, got '123'",
        ),
        (
            "id: {test: {npz: a.npz}}\nood: {near: {t: b.npz}, farr: {m: c.npz}}",
            r"ood.farr: unknown key; did you mean 'far'\?",
        ),
        (
            "id: {test: {npz: a.npz}}\nood: {farr: {m: {npz: c.npz}}}",
            r"ood.farr: not a source.*did you mean 'far'",
        ),
        (
            "id: {test: {npz: a.npz, rows: [1, x]}}\nood: {m: b.npz}",
            r"id.test.rows: expected a whole number, got 'x'",
        ),
        ("id: {test: {npz: a.npz, rootz: x}}\nood: {m: b.npz}", r"id.test.rootz: .*'root'"),
        ("id: {test: {npz: a.npz, split: val}}\nood: {m: b.npz}", r"id.test.split: applies only"),
        ("id: {test: {npz: a.npz, skip_bad: 1}}\nood: {m: b.npz}", r"skip_bad: expected true"),
        ("id: {tset: {npz: a.npz}}\nood: {m: b.npz}", r"id.tset: unknown key; did you mean 'test'"),
        ("id: {test: {npzz: a.npz}}\nood: {m: b.npz}", r"id.test: not a source.*'npz'"),
        ("num_classes: '10'\n" + BASE, r"num_classes: expected a whole number, got '10'"),
    ],
)
def test_strict_validation_names_the_yaml_key(tmp_path, text, message):
    with pytest.raises(BenchmarkFileError, match=message) as err:
        read_benchmark_file(_write(tmp_path, text))
    assert str(tmp_path / "b.yaml") in str(err.value)
    assert "label_override=" not in str(err.value) and "image_root" not in str(err.value)


def test_relative_paths_resolve_in_order(tmp_path, kit):
    file = _write(tmp_path, "id: {test: {npz: a.npz}}\nood: {m: b.npz}\n")
    spec, root = read_benchmark_file(file)
    assert root == tmp_path  # the file's folder
    assert read_benchmark_file(file, data_root=tmp_path / "x")[1] == tmp_path / "x"
    file.write_text("data_root: sub\n" + file.read_text())
    assert read_benchmark_file(file, data_root=tmp_path / "x")[1] == tmp_path / "sub"
    kit_file = _write(tmp_path, BASE)
    spec, _ = read_benchmark_file(kit_file)
    assert Path(spec.id_test.location) == (kit / "cifar10_exact_sample.npz").resolve()


def test_docs_cover_every_key():
    text = DOCS.read_text()
    for key in [*TOP_KEYS, *SOURCE_KEYS, "near", "far", "val", "test", "train"]:
        assert f"`{key}`" in text, key
    assert "`kit:FILE`" in text and "did you mean" in text


def test_template_is_a_valid_file(tmp_path, kit, capsys):
    assert main(["benchmark", "template"]) == 0
    out = capsys.readouterr().out
    assert out == TEMPLATE
    file = tmp_path / "t.yaml"
    file.write_text(out)
    assert main(["benchmark", "check", str(file)]) == 0
    assert "ok: run shapeood eval" in capsys.readouterr().out


def test_check_lists_sets_and_what_is_missing(tmp_path, capsys):
    file = _write(
        tmp_path,
        "id: {test: {npz: kit:cifar10_exact_sample.npz, rows: [0, 1, 2]}}\n"
        "ood: {far: {m: kit:mnist_test.npz, gone: {folder: nowhere}}}\n",
    )
    assert main(["benchmark", "check", str(file)]) == 1
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("id.", "ood."))]
    lines = {row[0]: row for row in rows}
    assert lines["id.test"][:5] == ["id.test", "id_test", "npz", "3", "ok"]
    assert lines["ood.far.m"][3:5] == ["10000", "ok"]
    assert lines["ood.far.gone"][4] == "missing"
    assert "missing (1):" in out and str(tmp_path / "nowhere") in out
    assert "not declared: id.val" in out
    bad = _write(tmp_path, "resize: big\n" + BASE)
    assert main(["benchmark", "check", str(bad)]) == 2
    assert "resize: expected a whole number" in capsys.readouterr().err


def _image_folder_writer():
    spec = importlib.util.spec_from_file_location(
        "make_image_folders", EXAMPLES / "make_image_folders.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_image_folders


def test_example_npz_benchmark_evaluates_on_the_kit(kit, tmp_path, capsys):
    file = EXAMPLES / "cifar10_kit.yaml"
    assert main(["benchmark", "check", str(file)]) == 0
    bench = get_benchmark(str(file))
    assert list(bench.ood["far"]) == ["mnist", "textures"] and bench.family == "cifar"
    code = main(["eval", "--benchmark", str(file), "--model", "resnet20_cifar10", "--methods",
                 "energy,ash_s", "--max-samples", "40", "--cache-dir", str(tmp_path / "c"),
                 "--quiet", "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    table = (tmp_path / "out" / "results.csv").read_text()
    assert all(name in table for name in ("mnist", "textures", "tin", "energy", "ash_s"))


def test_example_image_folder_benchmark_evaluates_on_pngs(kit, tmp_path, capsys):
    root = _image_folder_writer()(tmp_path / "images", per_set=12)
    assert not list(EXAMPLES.rglob("*.png"))  # images are written at run time, never committed
    file = EXAMPLES / "image_folders.yaml"
    assert main(["benchmark", "check", str(file), "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "ood.near.tin" in out and " 12 " in out
    code = main(["eval", "--benchmark", str(file), "--data-root", str(root), "--model",
                 "resnet20_cifar10", "--methods", "msp,react", "--aps", "--cache-dir",
                 str(tmp_path / "c"), "--quiet", "--out", str(tmp_path / "out")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "APS choices" in out
    table = (tmp_path / "out" / "results.csv").read_text()
    assert all(name in table for name in ("mnist", "textures", "tin", "msp", "react"))


def test_kit_is_found_from_any_folder(kit, tmp_path, monkeypatch):
    from shapeood import paths

    expected = kit.resolve()
    monkeypatch.delenv("SHAPEOOD_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data here
    assert paths.data_root().resolve() == expected  # beside the package's repository
    assert paths.kit_file("cifar10_test.npz").is_file()
    monkeypatch.setattr(paths, "REPOSITORY", tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="set SHAPEOOD_DATA to the kit folder") as err:
        paths.kit_file("cifar10_test.npz")
    assert "\n" not in str(err.value) and "SHAPEOOD_DATA is unset" in str(err.value)


def test_skip_bad_reaches_every_source(tmp_path):
    from shapeood.data import get_benchmark

    root = _image_folder_writer()(tmp_path / "images", per_set=3)
    (root / "cifar10" / "test" / "class000" / "broken.png").write_bytes(b"not a png")
    file = EXAMPLES / "image_folders.yaml"
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        bench = get_benchmark(str(file), data_root=root, skip_bad=True)
    assert all(source.skip_bad for _, _, source in bench.spec.roles())
    assert not get_benchmark(str(file), data_root=root).spec.id_test.skip_bad


def test_without_id_val_val_fitted_methods_use_id_train(kit):
    from shapeood.evaluation.plan import make_plan

    file = EXAMPLES / "cifar10_kit.yaml"  # id.test and id.train, no id.val
    plan = make_plan("resnet20_cifar10", str(file), "react,energy", max_samples=20)
    assert "id_train" in plan.roles and "id_val" not in plan.roles
    assert "id_train" not in make_plan("resnet20_cifar10", str(file), "energy").roles
