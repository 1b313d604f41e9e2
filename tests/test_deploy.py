"""OODClassifier on the kit's ResNet-20: fit, predict (every input form), autocast, save/load."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import shapeood as so
from shapeood.data import ArrayDataset, holdout_rows
from shapeood.deploy import DetectorFileError, OODClassifier


@pytest.fixture(scope="module")
def rows(kit: Path) -> dict[str, np.ndarray]:
    with np.load(kit / "cifar10_test.npz", allow_pickle=False) as z:
        labels = z["labels"]
        images = z["images"]
    val, test = holdout_rows(labels)
    with np.load(kit / "mnist_test.npz", allow_pickle=False) as z:
        mnist = z["images"][:16]
    return {"val": val[::5], "cifar": images[test[::300]], "mnist": mnist}  # 200, 30, 16


@pytest.fixture(scope="module")
def id_val(kit: Path, rows) -> ArrayDataset:
    return ArrayDataset(kit / "cifar10_test.npz", indices=rows["val"])


@pytest.fixture(scope="module")
def clf(id_val) -> OODClassifier:
    return OODClassifier("resnet20_cifar10", method="scale").fit(id_val, target_tpr=0.9)


def _transformed(clf: OODClassifier, images: np.ndarray) -> torch.Tensor:
    return torch.stack([clf.transform(torch.from_numpy(i).permute(2, 0, 1)) for i in images])


def test_fit_sets_the_threshold_by_the_documented_rule(clf, id_val):
    fs = so.extract(clf.feature_model, id_val, cache=False, progress=False)
    scores = clf.detector.score(fs.features, plain_logits=fs.logits)
    k = int(np.ceil(0.9 * len(scores)))
    assert clf.threshold_ == pytest.approx(float(torch.sort(scores, descending=True).values[k - 1]))
    assert clf.id_accepted_rate_ == pytest.approx(float((scores >= clf.threshold_).double().mean()))
    assert clf.id_accepted_rate_ >= 0.9
    assert clf.class_names[0] == "airplane" and clf.n_id_ == 200 and clf.fit_split_ is None
    # predict on the same ID images accepts the same share
    out = clf.predict_features(fs.features, fs.logits)
    assert float((~out.is_ood).double().mean()) == pytest.approx(clf.id_accepted_rate_)


def test_predict_result_and_input_forms(clf, rows):
    images = rows["cifar"]
    out = clf.predict(_transformed(clf, images))
    n = len(images)
    assert out.labels.shape == (n,) and out.labels.dtype == torch.int64
    assert out.scores.shape == (n,) and out.scores.dtype == torch.float32
    assert out.is_ood.dtype == torch.bool and out.probabilities.shape == (n, 10)
    torch.testing.assert_close(out.probabilities.sum(1), torch.ones(n))
    assert torch.equal(out.labels, out.probabilities.argmax(1))
    assert torch.equal(out.is_ood, out.scores < out.threshold)
    assert out.threshold == clf.threshold_
    for other in (
        images,  # uint8 (N, H, W, 3)
        list(images),
        [Image.fromarray(i) for i in images],
        [torch.from_numpy(i).permute(2, 0, 1) for i in images],
    ):
        torch.testing.assert_close(clf.predict(other).scores, out.scores)
    single = clf.predict(Image.fromarray(images[3]))
    assert len(single) == 1 and single.labels[0] == out.labels[3]
    records = out.to_records()
    assert records[0]["class_name"] == clf.class_names[records[0]["label"]]
    assert set(records[0]) == {"label", "class_name", "score", "is_ood"}


def test_mnist_is_mostly_rejected_and_cifar_mostly_accepted(clf, rows):
    assert float(clf.predict(rows["mnist"]).is_ood.float().mean()) >= 0.5
    assert float(clf.predict(rows["cifar"]).is_ood.float().mean()) <= 0.5


def test_predict_features_matches_predict(clf, rows):
    x = _transformed(clf, rows["cifar"])
    h, _ = clf.feature_model.features_and_logits(x)
    a, b = clf.predict(x), clf.predict_features(h.detach().numpy())
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-5, atol=1e-4)
    assert torch.equal(a.labels, b.labels)


def test_autocast_bfloat16_on_cpu(id_val, rows):
    amp = OODClassifier("resnet20_cifar10", method="energy", amp="bf16").fit(id_val)
    ref = OODClassifier("resnet20_cifar10", method="energy").fit(id_val)
    a, b = amp.predict(rows["cifar"]), ref.predict(rows["cifar"])
    assert a.scores.dtype == torch.float32 and a.probabilities.dtype == torch.float32
    torch.testing.assert_close(a.scores, b.scores, rtol=0.05, atol=0.2)
    assert float((a.labels == b.labels).float().mean()) >= 0.9
    assert amp._amp_dtype == torch.bfloat16


def test_fit_data_feeds_methods_that_learn_from_training_features(kit, id_val):
    train = ArrayDataset(kit / "cifar10_train_subset.npz", indices=np.arange(0, 10000, 100))
    dice = OODClassifier("resnet20_cifar10", method="dice").fit(id_val, fit_data=train)
    fs = so.extract(dice.feature_model, train, cache=False, progress=False)
    torch.testing.assert_close(dice.detector.mean_feature_, fs.features.mean(0))
    assert dice.fit_split_ == "fit_data" and dice.n_fit_ == 100
    id_fs = so.extract(dice.feature_model, id_val, cache=False, progress=False)
    react = OODClassifier(dice.model, method="react").fit(id_fs, fit_data=fs)
    assert react.fit_split_ == "id_data" and react.n_fit_ == len(id_val)
    expected = np.float32(np.percentile(id_fs.features.numpy().ravel(), 90))
    assert react.detector.threshold_ == pytest.approx(float(expected))
    himplos = OODClassifier(dice.model, method="himplos", preset="cifar")
    himplos.fit(id_fs, fit_data=fs)  # prototypes from the true labels of fit_data
    first = fs.features[fs.labels == 0].mean(0)
    torch.testing.assert_close(himplos.detector.prototypes_[0], first, rtol=1e-5, atol=1e-5)
    energy = OODClassifier(dice.model, method="energy").fit(id_fs, fit_data=fs)
    assert energy.fit_split_ is None and energy.n_fit_ == 0


def test_odin_predicts_through_the_model_but_does_not_export(id_val, rows, tmp_path):
    odin = OODClassifier("resnet20_cifar10", method="odin", temperature=1000, noise=0.0014)
    small = ArrayDataset(id_val.path, indices=id_val.indices[:40])
    odin.fit(small, target_tpr=0.9)
    out = odin.predict(rows["cifar"][:8])
    assert out.scores.shape == (8,) and torch.equal(out.is_ood, out.scores < odin.threshold_)
    with pytest.raises(ValueError, match="ODIN"):
        odin.export_onnx(tmp_path / "odin.onnx")


def test_save_load_round_trip(clf, rows, tmp_path):
    path = clf.save(tmp_path / "detector.sood")
    assert path.name == "detector.sood"
    loaded = OODClassifier.load(path)
    a, b = clf.predict(rows["cifar"]), loaded.predict(rows["cifar"])
    assert torch.equal(a.scores, b.scores) and torch.equal(a.is_ood, b.is_ood)
    assert loaded.threshold_ == clf.threshold_ and loaded.target_tpr_ == 0.9
    assert loaded.class_names == clf.class_names
    assert repr(loaded.transform) == repr(clf.transform)
    # the file is npz + JSON: readable without pickle, no object arrays
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        assert all(z[k].dtype != object for k in z.files)
    assert header["format"] == "shapeood-detector" and header["method"] == "scale"
    assert header["shapeood_version"] == so.__version__
    assert header["model"]["spec"] == "resnet20_cifar10"
    assert header["model"]["includes_weights"] is True


def test_load_without_weights_rebuilds_from_the_spec(clf, rows, tmp_path):
    path = clf.save(tmp_path / "light.sood", include_model=False)
    with zipfile.ZipFile(path) as z:
        assert not any(n.startswith("weights/") for n in z.namelist())
    loaded = OODClassifier.load(path)
    assert torch.equal(loaded.predict(rows["cifar"]).scores, clf.predict(rows["cifar"]).scores)


def test_load_refuses_a_model_with_other_weights(clf, tmp_path):
    path = clf.save(tmp_path / "detector.sood", include_model=False)
    other = so.models.load_model("resnet20_cifar10")
    with torch.no_grad():
        other.linear.bias.add_(0.01)
    with pytest.raises(ValueError, match="differ from those the detector was fitted with"):
        OODClassifier.load(path, model=other)
    same = so.models.load_model("resnet20_cifar10")
    assert OODClassifier.load(path, model=same).threshold_ == clf.threshold_


def test_plain_module_needs_model_at_load(id_val, rows, tmp_path):
    net = so.models.load_model("resnet20_cifar10")
    net.pretrained_cfg = {k: v for k, v in net.pretrained_cfg.items() if k != "architecture"}
    plain = OODClassifier(net, method="energy").fit(id_val)
    path = plain.save(tmp_path / "plain.sood")
    with pytest.raises(ValueError, match="load_weights=True"):
        OODClassifier.load(path)
    fresh = so.models.create("resnet20_cifar")  # random weights, same architecture
    with pytest.raises(ValueError, match="digest"):
        OODClassifier.load(path, model=fresh)
    loaded = OODClassifier.load(path, model=fresh, load_weights=True)
    assert torch.equal(loaded.predict(rows["cifar"]).scores, plain.predict(rows["cifar"]).scores)


def test_not_a_detector_file(tmp_path, kit):
    junk = tmp_path / "junk.sood"
    junk.write_text("hello")
    with pytest.raises(DetectorFileError, match="not a shapeood detector file"):
        OODClassifier.load(junk)
    with pytest.raises(DetectorFileError, match="not a shapeood detector file"):
        OODClassifier.load(kit / "mnist_test.npz")  # an npz, but no header
    with pytest.raises(FileNotFoundError, match="not found"):
        OODClassifier.load(tmp_path / "missing.sood")


def test_unfitted_and_bad_inputs(clf):
    fresh = OODClassifier("resnet20_cifar10", method="scale")
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.predict(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="images must be"):
        clf.predict(["not an image"])
    with pytest.raises(ValueError, match="target_tpr"):
        fresh.fit(torch.zeros(4, 3, 32, 32), target_tpr=95)
    with pytest.raises(ValueError, match="class_names has 3 names"):
        OODClassifier("resnet20_cifar10", class_names=["a", "b", "c"])


def test_exported_as_a_lazy_top_level_name():
    assert so.OODClassifier is OODClassifier
