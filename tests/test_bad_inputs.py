"""Bad inputs, through the command line and the Python API: never a raw traceback, never silence.

Every case asserts the outcome (CLI: the exit code; API: the exception or warning type), that
no traceback is printed, and that the message names the culprit (file, key, option) and the
fix. Case ids start with the outcome: ``error-`` (one-line error, exit 2 / an exception),
``refused-`` (a destructive action refused, listing what it would have done), ``warn-`` (a
degenerate result computed and flagged), ``ok-`` (the right thing done despite the fault).
Most CLI cases call ``shapeood.cli.main`` in-process; two use a real subprocess.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import shapeood as so
from features_helpers import TinyFeatureModel, TinyImages
from shapeood.cli import main
from shapeood.errors import (
    BadFileError,
    CacheWarning,
    CorruptCacheError,
    DegenerateResultWarning,
    DiskError,
    ShapeoodError,
)
from shapeood.features import FeatureCache, extract

# ----------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def files(tmp_path_factory, kit):
    """Broken and valid input files, written once."""
    d = tmp_path_factory.mktemp("bad")
    kit_weights = kit / "weights_cifar10_resnet20_akamaster.npz"
    (d / "trunc.npz").write_bytes(kit_weights.read_bytes()[:700])
    (d / "garbage.pth").write_bytes(b"\x00not a checkpoint at all")
    torch.save(torch.nn.Linear(2, 2).state_dict(), d / "ok.pth")
    (d / "trunc.pth").write_bytes((d / "ok.pth").read_bytes()[:60])
    (d / "bad.yaml").write_text("name: x\nid:\n  test: [unclosed\n")
    (d / "bad.toml").write_text("name = \n")
    (d / "list.yaml").write_text("- just\n- a list\n")
    (d / "bad.csv").write_text('method,dataset\n"unterminated\n')
    (d / "other.csv").write_text("x,y\n1,2\n")
    (d / "bad.json").write_text('{"rows": [')
    (d / "norows.json").write_text('{"columns": []}')
    (d / "trunc_images.npz").write_bytes((kit / "mnist_test.npz").read_bytes()[:5000])
    images = d / "images" / "cls"
    images.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(images / f"{i}.png")
    (images / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (d / "list.txt").write_text("cls/0.png 0\ncls/1.png not-a-label\n")
    return d


def _cli(capsys, argv, code, *needles, absent=("Traceback",)):
    """Run ``shapeood argv``; check the exit code, the absence of a traceback, the message."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse usage errors
        rc = exit_.code
    out, err = capsys.readouterr()
    text = out + err
    assert rc == code, text[-2000:]
    for word in absent:
        assert word not in text, text[-2000:]
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text[-2000:]!r}"
    if code == 2 and "usage:" not in err:
        errors = [line for line in err.splitlines() if line.startswith("shapeood: error:")]
        assert len(errors) == 1, err  # one line
    return text


@pytest.fixture()
def env(monkeypatch, tmp_path, kit):
    monkeypatch.setenv("SHAPEOOD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SHAPEOOD_DATA", str(kit.resolve()))
    return tmp_path


EVAL = ["eval", "--benchmark", "cifar10_offline", "--model", "resnet20_cifar10", "--quiet"]

# (id, argv using {f} for the files folder, exit code, needles)
CLI_CASES = [
    ("error-benchmark-file-missing", ["eval", "--benchmark", "{f}/nope.yaml", "--model",
     "resnet20_cifar10"], 2, ["nope.yaml"]),
    ("error-yaml-syntax", ["eval", "--benchmark", "{f}/bad.yaml", "--model", "resnet20_cifar10"],
     2, ["bad.yaml", "line 4", "YAML syntax error"]),
    ("error-toml-syntax", ["eval", "--benchmark", "{f}/bad.toml", "--model", "resnet20_cifar10"],
     2, ["bad.toml", "line 1", "TOML syntax error"]),
    ("error-yaml-not-a-mapping", ["eval", "--benchmark", "{f}/list.yaml", "--model",
     "resnet20_cifar10"], 2, ["list.yaml", "mapping"]),
    ("error-weights-truncated-npz", [*EVAL, "--weights", "{f}/trunc.npz"], 2,
     ["trunc.npz", "cannot read weights file"]),
    ("error-weights-garbage-pth", [*EVAL, "--weights", "{f}/garbage.pth"], 2, ["garbage.pth"]),
    ("error-weights-truncated-pth", [*EVAL, "--weights", "{f}/trunc.pth"], 2, ["trunc.pth"]),
    ("error-weights-missing", [*EVAL, "--weights", "{f}/absent.pth"], 2, ["absent.pth"]),
    ("error-device-cuda", [*EVAL, "--device", "cuda"], 2, ["--device cuda", "--device cpu"]),
    ("error-device-cuda-index", [*EVAL, "--device", "cuda:3"], 2, ["cuda:3", "--device auto"]),
    ("error-percentile-fraction", [*EVAL, "--param", "scale.percentile=0.85", "--methods",
     "scale", "--max-samples", "4"], 2, ["percentile=0.85", "percentile=85", "0.85%"]),
    ("error-percentile-100", [*EVAL, "--param", "ash_s.percentile=100", "--methods", "ash_s",
     "--max-samples", "4"], 2, ["percentile", "[0, 100)"]),
    ("error-param-syntax", [*EVAL, "--param", "percentile85"], 2, ["--param", "METHOD.PARAM"]),
    ("error-unknown-method", [*EVAL, "--methods", "nosuch"], 2, ["nosuch"]),
    ("error-unknown-benchmark", ["eval", "--benchmark", "nosuch_bench", "--model",
     "resnet20_cifar10"], 2, ["nosuch_bench"]),
    ("error-batch-size-zero", [*EVAL, "--batch-size", "0"], 2, ["--batch-size"]),
    ("error-max-samples-negative", [*EVAL, "--max-samples", "-3"], 2, ["--max-samples"]),
    ("error-report-csv-syntax", ["report", "{f}/bad.csv", "--out", "{f}/o"], 2,
     ["bad.csv", "cannot read results file"]),
    ("error-report-csv-columns", ["report", "{f}/other.csv", "--out", "{f}/o"], 2,
     ["other.csv", "method"]),
    ("error-report-json-syntax", ["report", "{f}/bad.json", "--out", "{f}/o"], 2,
     ["bad.json", "not valid JSON"]),
    ("error-report-json-no-rows", ["report", "{f}/norows.json", "--out", "{f}/o"], 2,
     ["norows.json", "rows"]),
    ("error-report-missing", ["report", "{f}/absent.csv", "--out", "{f}/o"], 2, ["absent.csv"]),
    ("error-extract-corrupt-image", ["extract", "--model", "resnet20_cifar10", "--data",
     "{f}/images", "--quiet"], 2, ["3.png", "--skip-bad"]),
    ("error-extract-truncated-archive", ["extract", "--model", "resnet20_cifar10", "--data",
     "{f}/trunc_images.npz", "--quiet"], 2, ["trunc_images.npz"]),
    ("error-extract-imglist-label", ["extract", "--model", "resnet20_cifar10", "--data",
     "{f}/list.txt", "--data-root", "{f}/images", "--quiet"], 2, ["list.txt", "line 2"]),
    ("error-extract-missing-data", ["extract", "--model", "resnet20_cifar10", "--data",
     "{f}/nothing_here", "--quiet"], 2, ["nothing_here"]),
    ("refused-cache-clear-empty", ["cache", "clear", ""], 2, ["blank key", "--all"]),
    ("refused-cache-clear-blank", ["cache", "clear", "   "], 2, ["blank key"]),
    ("refused-cache-clear-nothing", ["cache", "clear"], 2, ["--all"]),
    ("refused-cache-clear-key-and-all", ["cache", "clear", "abc", "--all"], 2, ["not both"]),
    ("error-cache-clear-unknown", ["cache", "clear", "zzz_nothing"], 1, ["zzz_nothing"]),
    ("error-train-no-out", ["train", "--model", "resnet20_cifar10", "--data",
     "kit:cifar10_train_subset.npz"], 2, ["--out"]),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "code", "needles"), [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])  # fmt: skip
def test_cli_bad_input(capsys, env, files, argv, code, needles):
    argv = [a.replace("{f}", str(files)) for a in argv]
    _cli(capsys, argv, code, *needles)


# ----------------------------------------------------------------------------- cache via CLI


def _two_entries(cache_dir: Path) -> tuple[str, str]:
    cache = FeatureCache(cache_dir)
    a = extract(TinyFeatureModel(), TinyImages(6), cache=cache, progress=False).meta["key"]
    b = extract(TinyFeatureModel(), TinyImages(8), cache=cache, progress=False).meta["key"]
    return a, b


def test_refused_cache_clear_ambiguous_prefix_lists_and_keeps(capsys, tmp_path):
    a, b = _two_entries(tmp_path)
    text = _cli(capsys, ["cache", "--cache-dir", tmp_path, "clear", "tiny"], 2, "matches 2", a, b)
    assert "would remove" in text and {e.key for e in FeatureCache(tmp_path).list()} == {a, b}
    _cli(capsys, ["cache", "--cache-dir", tmp_path, "clear", a[:-3]], 0, f"removed {a}")
    assert [e.key for e in FeatureCache(tmp_path).list()] == [b]


def test_ok_cache_list_survives_a_corrupt_entry(capsys, tmp_path):
    a, b = _two_entries(tmp_path)
    (tmp_path / b / "meta.json").write_text("{oops")
    _cli(capsys, ["cache", "--cache-dir", tmp_path, "list"], 0, a, b, "corrupt", "1 corrupt")


def test_ok_extract_skip_bad_leaves_the_bad_image_out(capsys, env, files):
    argv = ["extract", "--model", "resnet20_cifar10", "--data", files / "images", "--quiet",
            "--skip-bad"]  # fmt: skip
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image.*3\.png"):
        _cli(capsys, argv, 0, "N        3")


def test_error_no_recompute_names_cache_clear(capsys, env, tmp_path, files):
    argv = ["extract", "--model", "resnet20_cifar10", "--data", files / "images", "--skip-bad",
            "--quiet", "--cache-dir", tmp_path / "c"]  # fmt: skip
    _cli(capsys, argv, 0)
    (entry,) = FeatureCache(tmp_path / "c").list()
    path = entry.path / "features.npy"
    path.write_bytes(path.read_bytes()[:-16] + bytes(16))  # same size, zeroed tail
    _cli(capsys, [*argv, "--no-recompute"], 2, f"shapeood cache clear {entry.key}", "features.npy")
    with pytest.warns(CacheWarning, match=rf"{entry.key} is corrupt.*recomputing it"):
        _cli(capsys, argv, 0)


def test_error_read_only_cache_names_the_folder(capsys, env, tmp_path, files, monkeypatch):
    """A cache folder the user may not write to (EACCES, simulated: root ignores chmod)."""
    import builtins

    real_open = builtins.open
    ro = tmp_path / "ro"

    def denied(file, mode="r", *args, **kwargs):
        if "w" in str(mode) and str(ro) in str(file):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    argv = ["extract", "--model", "resnet20_cifar10", "--data", files / "images",
            "--skip-bad", "--quiet", "--cache-dir", ro]  # fmt: skip
    _cli(capsys, argv, 2, str(ro), "cannot write")


def test_error_disk_full_names_path_and_space(capsys, env, tmp_path, files, monkeypatch):
    """ENOSPC from the file system (simulated: no tmpfs can be mounted in a test run)."""
    import builtins

    real_open = builtins.open

    def full_disk(file, mode="r", *args, **kwargs):
        if "w" in str(mode) and str(tmp_path / "full") in str(file):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk)
    argv = ["extract", "--model", "resnet20_cifar10", "--data", files / "images", "--skip-bad",
            "--quiet", "--cache-dir", tmp_path / "full"]  # fmt: skip
    _cli(capsys, argv, 2, "no space left", str(tmp_path / "full"), "needed", "free")


def test_error_read_only_file_system_is_a_disk_error(tmp_path, monkeypatch):
    from shapeood.features import store

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path))

    monkeypatch.setattr(store.os, "fsync", read_only)
    with pytest.raises(DiskError, match=r"cannot write .*Read-only file system"):
        store.write_json(tmp_path / "x.json", {"a": 1})
    assert not list(tmp_path.iterdir())  # no temporary file left behind


def test_error_truncated_training_checkpoint(capsys, env, tmp_path, files):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    argv = ["train", "--model", "resnet20_cifar10", "--data", "kit:cifar10_train_subset.npz",
            "--out", out, "--epochs", "1", "--quiet"]  # fmt: skip
    _cli(capsys, argv, 2, "checkpoint.pt", "training checkpoint", "--no-resume")


def test_debug_shows_the_traceback(capsys, env, files):
    try:
        main(["eval", "--benchmark", str(files / "bad.yaml"), "--model", "resnet20_cifar10",
              "--debug"])  # fmt: skip
    except SystemExit:
        pass
    err = capsys.readouterr().err
    assert "Traceback" in err and "shapeood: error:" in err and "bad.yaml" in err


def test_unexpected_errors_are_one_line_with_exit_1(capsys, monkeypatch):
    from shapeood.cli import cache as cache_cli

    def boom(args):
        raise KeyError("internal")

    monkeypatch.setattr(cache_cli, "_list", lambda *a: boom(a))
    _cli(capsys, ["cache", "list"], 1, "unexpected KeyError", "--debug")


def test_subprocess_no_traceback_and_shapeood_debug(files, kit):
    env = dict(os.environ, SHAPEOOD_DATA=str(kit.resolve()))
    argv = [sys.executable, "-m", "shapeood.cli", "eval", "--benchmark", str(files / "bad.toml"),
            "--model", "resnet20_cifar10"]  # fmt: skip
    plain = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    errors = [line for line in plain.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "bad.toml" in errors[0] and "line 1" in errors[0]
    debug = subprocess.run(argv, env=dict(env, SHAPEOOD_DEBUG="1"), capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert debug.returncode == 2 and "Traceback" in debug.stderr


# ----------------------------------------------------------------------------- API


def _head() -> so.LinearHead:
    gen = torch.Generator().manual_seed(0)
    return so.LinearHead(torch.randn(3, 16, generator=gen), torch.zeros(3))


X = torch.rand(6, 16, generator=torch.Generator().manual_seed(1))
Y = torch.arange(6) % 3
PERCENT_METHODS = ["scale", "ash_s", "ash_b", "ash_p", "dice", "react", "himplos"]


@pytest.mark.parametrize(
    "method", PERCENT_METHODS, ids=[f"error-{m}-fraction" for m in PERCENT_METHODS]
)
def test_api_detector_percentile_fraction(method):
    with pytest.raises(
        ShapeoodError, match=r"percentile=0\.85 looks like a fraction.*=85 for 85 %"
    ):
        so.create_detector(method, percentile=0.85).fit(_head(), X, Y)


@pytest.mark.parametrize(
    "method", PERCENT_METHODS, ids=[f"ok-{m}-percent-opt-out" for m in PERCENT_METHODS]
)
def test_api_detector_percent_opt_out(method):
    det = so.create_detector(method, percentile=so.percent(0.85)).fit(_head(), X, Y)
    assert det.score(X).shape == (6,)


SHAPING = ["ash_p", "ash_b", "ash_s", "scale"]


@pytest.mark.parametrize("fn", SHAPING, ids=[f"error-shaping-{f}-fraction" for f in SHAPING])
def test_api_shaping_percentile_fraction(fn):
    with pytest.raises(ShapeoodError, match=r"percentile=50 for 50 %"):
        getattr(so.shaping, fn)(X, 0.5)


@pytest.mark.parametrize(
    ("value", "needle"),
    [(100, r"\[0, 100\)"), (float("nan"), r"\[0, 100\)"), ("abc", "number"), (True, "number"),
     (-1, r"\[0, 100\)")],
    ids=["error-p100", "error-pnan", "error-pstr", "error-pbool", "error-pneg"],
)  # fmt: skip
def test_api_percentile_out_of_range(value, needle):
    with pytest.raises(ShapeoodError, match=needle):
        so.shaping.scale(X, value)


def test_api_ish_percent_and_fraction():
    from shapeood.train import TrainConfig, apply_ish

    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with pytest.raises(ShapeoodError, match="ISH percentile=85 for 85 %"):
        apply_ish(model, percentile=0.85, head="2")
    with pytest.raises(ShapeoodError, match="85"):
        TrainConfig(ish_percentile=0.85)
    assert apply_ish(model, percentile=85, head="2")[2].percentile == 85


def test_api_lhact_fitted_percentile_fraction():
    with pytest.raises(ShapeoodError, match="th_percentile=90"):
        so.create_detector("lhact", th_percentile=0.9, tl_percentile=35).fit(_head(), X, Y)


def test_api_corrupt_cache_entry_raises_when_not_recomputing(tmp_path):
    fs = extract(TinyFeatureModel(), TinyImages(6), cache=tmp_path, progress=False)
    key = fs.meta["key"]
    (tmp_path / key / "labels.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CorruptCacheError, match=rf"{key}.*labels\.npy.*shapeood cache clear {key}"):
        extract(TinyFeatureModel(), TinyImages(6), cache=tmp_path, progress=False, recompute=False)
    with pytest.warns(CacheWarning, match=key):
        extract(TinyFeatureModel(), TinyImages(6), cache=tmp_path, progress=False)


def test_api_cache_clear_refuses_blank_and_bad_keys(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ShapeoodError, match="blank key"):
        cache.clear("  ")
    with pytest.raises(ShapeoodError, match="plain folder names"):
        cache.path("../escape")


def test_api_bad_image_names_file_and_skip_bad(files):
    from shapeood.data import BadImageError, load_rgb

    with pytest.raises(BadImageError, match=r"3\.png.*skip_bad=True \(--skip-bad\)") as info:
        load_rgb(files / "images" / "cls" / "3.png")
    assert info.value.path.endswith("3.png") and isinstance(info.value, ShapeoodError)


def test_api_truncated_image_archive(files):
    from shapeood.data import ArrayDataset

    with pytest.raises(BadFileError, match=r"trunc_images\.npz"):
        ArrayDataset(files / "trunc_images.npz")[0]


def test_api_image_list_bad_label(files):
    from shapeood.data import ImageListDataset

    with pytest.raises(ValueError, match=r"list\.txt line 2"):
        ImageListDataset(files / "images", files / "list.txt")


def test_api_missing_folder():
    from shapeood.data import ImageFolderDataset

    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        ImageFolderDataset("no_such_folder")


def test_api_weights_file_errors_never_suggest_unsafe_loading(files):
    from shapeood.models.checkpoints import read_checkpoint

    for name in ("garbage.pth", "trunc.pth", "trunc.npz"):
        with pytest.raises(ValueError, match=name) as info:
            read_checkpoint(files / name)
        assert "weights_only" not in str(info.value)


def test_api_training_checkpoint_truncated(tmp_path):
    from shapeood.train.checkpoint import load_checkpoint

    (tmp_path / "ck.pt").write_bytes(b"PK\x03\x04")
    with pytest.raises(BadFileError, match=r"ck\.pt.*--no-resume"):
        load_checkpoint(tmp_path / "ck.pt")


def test_api_benchmark_file_syntax(files):
    from shapeood.data.benchmarks.files import load_benchmark_file

    with pytest.raises(BadFileError, match=r"bad\.yaml line 4"):
        load_benchmark_file(files / "bad.yaml")
    with pytest.raises(BadFileError, match=r"bad\.toml: TOML syntax error.*line 1"):
        load_benchmark_file(files / "bad.toml")


def test_api_disk_full_during_a_chunk_write(tmp_path, monkeypatch):
    from shapeood.features import store

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", no_space)
    with pytest.raises(DiskError, match=r"no space left on the disk holding .*tiny__.*needed"):
        extract(TinyFeatureModel(), TinyImages(6), cache=tmp_path, progress=False)


def test_warn_constant_detector():
    with pytest.warns(DegenerateResultWarning, match="constant detector"):
        assert so.metrics.fpr_at_95(np.ones(10), np.ones(10), "classic") == 0.0


def test_warn_set_with_one_distinct_score():
    with pytest.warns(DegenerateResultWarning, match="all 4 OOD scores are equal"):
        so.metrics.fpr_at_95(np.arange(10.0), np.full(4, 3.0))


def test_warn_set_with_one_score():
    with pytest.warns(DegenerateResultWarning, match="OOD set has 1 score"):
        so.metrics.fpr_at_95(np.arange(10.0), np.array([2.0]))


def test_warn_himplos_on_all_zero_features():
    with pytest.warns(DegenerateResultWarning, match="all-zero features"):
        so.create_detector("himplos").fit(_head(), torch.zeros(6, 16), Y)


def test_ok_distinct_scores_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateResultWarning)
        so.metrics.fpr_at_95(np.arange(10.0), np.arange(5.0))


def test_ok_pixels_are_exactly_to_tensor():
    from torchvision.transforms import ToTensor

    from shapeood.data.pixels import to_float
    from shapeood.models import transform_for

    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = np.stack([values] * 3, axis=-1)
    expected = ToTensor()(Image.fromarray(rgb))
    assert torch.equal(to_float(Image.fromarray(rgb)), expected)
    assert torch.equal(to_float(torch.from_numpy(rgb).permute(2, 0, 1)), expected)
    cfg = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "input_size": (3, 16, 16),
           "resize": 16, "interpolation": "bilinear", "num_classes": 2}  # fmt: skip
    through = transform_for(cfg)(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
    assert torch.equal(through, expected)  # the model pipeline divides too, bit for bit


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A real 8 KiB tmpfs (and a read-only one) where this machine lets the test mount one."""
    full, ro = tmp_path / "tmpfs_full", tmp_path / "tmpfs_ro"
    full.mkdir()
    ro.mkdir()
    mounted = []
    try:
        for path, opts in ((full, "size=8k"), (ro, "size=64k,ro")):
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            if result.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()[:80]}); the "
                            "simulated ENOSPC/EROFS cases above cover the messages")  # fmt: skip
            mounted.append(path)
        yield full, ro
    except FileNotFoundError:
        pytest.skip("no mount command: the simulated ENOSPC/EROFS cases cover the messages")
    finally:
        for path in mounted:
            subprocess.run(["umount", str(path)], capture_output=True, timeout=20)


def test_error_real_full_and_read_only_disks(capsys, env, small_tmpfs, files):
    full, ro = small_tmpfs
    argv = ["extract", "--model", "resnet20_cifar10", "--data", files / "images", "--quiet",
            "--skip-bad"]  # fmt: skip
    # an entry is several files of one 4 KiB page each at least: more than 8 KiB
    _cli(capsys, [*argv, "--cache-dir", full], 2, "no space left", str(full), "needed", "free")
    _cli(capsys, [*argv, "--cache-dir", ro], 2, "cannot write", str(ro), "Read-only file system")


def test_warn_model_on_random_weights():
    net = so.models.load_model("resnet20_cifar", random_weights=True)
    data = torch.utils.data.TensorDataset(
        torch.rand(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
    )
    with pytest.warns(DegenerateResultWarning, match="random, never-loaded weights"):
        extract(net, data, cache=False, progress=False)
