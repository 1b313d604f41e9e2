"""ONNX (in onnxruntime) and TorchScript exports against eager predict on real kit images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import shapeood as so
from shapeood.data import ArrayDataset, holdout_rows
from shapeood.deploy import OODClassifier, exportable_methods

METHODS = {
    "scale": {},
    "ash_p": {"percentile": 90},
    "ash_b": {"percentile": 90},
    "ash_s": {"percentile": 95},
    "energy": {"temperature": 2.0},
    "msp": {},
    "max_logit": {},
    "react": {},
    "lhact": {"th_percentile": 95, "tl_percentile": 35},
    "dice": {},
    "himplos": {"percentile": 60, "threshold": 1.6},
    "odin": {"noise": 0.0},
}


@pytest.fixture(scope="module")
def data(kit: Path):
    with np.load(kit / "cifar10_test.npz", allow_pickle=False) as z:
        labels, images = z["labels"], z["images"]
    val, test = holdout_rows(labels)
    with np.load(kit / "mnist_test.npz", allow_pickle=False) as z:
        mnist = z["images"][:12]
    net = so.models.load_model("resnet20_cifar10")
    fm = so.models.adapt(net)
    id_val = ArrayDataset(kit / "cifar10_test.npz", indices=val[::8])  # 125 images
    fs = so.extract(fm, id_val, cache=False, progress=False)
    return {"net": net, "fs": fs, "images": [*images[test[::450]], *mnist]}


def _compare(
    clf: OODClassifier, x: torch.Tensor, score: np.ndarray, is_ood: np.ndarray, logits: np.ndarray
) -> None:
    ref = clf.predict(x)
    np.testing.assert_allclose(score, ref.scores.numpy(), rtol=1e-4, atol=1e-6)
    probabilities = torch.softmax(torch.from_numpy(logits), dim=1)
    torch.testing.assert_close(probabilities, ref.probabilities, rtol=1e-4, atol=1e-5)
    near = np.abs(ref.scores.numpy() - clf.threshold_) <= 1e-4 * max(1.0, abs(clf.threshold_))
    assert is_ood.dtype == np.bool_
    assert np.array_equal(is_ood[~near], ref.is_ood.numpy()[~near])


def test_every_feature_method_is_covered():
    assert set(METHODS) - {"odin"} == set(exportable_methods())


@pytest.mark.parametrize("method", list(METHODS))
def test_onnx_and_torchscript_match_eager_predict(method, data, tmp_path):
    clf = OODClassifier(data["net"], method=method, **METHODS[method])
    clf.fit(data["fs"], target_tpr=0.95)
    x = torch.stack([clf.transform(torch.from_numpy(i).permute(2, 0, 1)) for i in data["images"]])
    onnx_path = clf.export_onnx(tmp_path / "clf.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    logits, score, is_ood = session.run(None, {"image": x.numpy()})
    _compare(clf, x, score, is_ood, logits)
    if method in ("scale", "himplos"):  # TorchScript shares the traced graph
        with warnings.catch_warnings():  # torch.jit.load is deprecated but still the loader
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(clf.export_torchscript(tmp_path / "clf.pt")))
        logits, score, is_ood = (t.numpy() for t in module(x[:9]))
        _compare(clf, x[:9], score, is_ood, logits)


def test_odin_with_noise_says_it_cannot_export(data, tmp_path):
    clf = OODClassifier(data["net"], method="odin").fit(data["images"][:8])
    with pytest.raises(ValueError, match="ODIN perturbs each input image"):
        clf.export_torchscript(tmp_path / "odin.pt")


def test_hook_adapted_torchvision_model_exports(data, tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    net.pretrained_cfg = so.models.complete_cfg({"input_size": (3, 32, 32)}, 10)
    clf = OODClassifier(net, method="ash_s", percentile=90)
    clf.fit(data["images"], target_tpr=0.9)
    assert not clf.feature_model.use_contract
    x = torch.stack([clf.transform(torch.from_numpy(i).permute(2, 0, 1)) for i in data["images"]])
    session = ort.InferenceSession(
        str(clf.export_onnx(tmp_path / "tv.onnx")), providers=["CPUExecutionProvider"]
    )
    logits, score, is_ood = session.run(None, {"image": x.numpy()})
    _compare(clf, x, score, is_ood, logits)
    assert isinstance(clf.model.fc, torch.nn.Linear)  # the export did not touch the model
