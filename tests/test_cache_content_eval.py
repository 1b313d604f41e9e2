"""Content keys end to end: evaluations reuse features whatever the benchmark and sets are called.

Forward passes are counted with a hook on the first convolution of the kit ResNet-20.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

import shapeood as so
from shapeood.features import FeatureCache

ID_ROWS = list(range(0, 64))
VAL_ROWS = list(range(64, 96))
CSID_ROWS = list(range(96, 128))
OOD_ROWS = list(range(0, 48))


def _bench_file(folder, kit, name: str, sets: dict[str, str]) -> str:
    data = {
        "name": name,
        "family": "cifar",
        "num_classes": 10,
        "data_root": str(kit.resolve()),
        "id": {
            "test": {"npz": "cifar10_test.npz", "rows": ID_ROWS},
            "val": {"npz": "cifar10_test.npz", "rows": VAL_ROWS},
        },
        "ood": {
            "val": {"npz": "tinyimagenet_val_32.npz", "rows": list(range(100, 132))},
            "near": {sets["tin"]: {"npz": "tinyimagenet_val_32.npz", "rows": OOD_ROWS}},
            "far": {sets["mnist"]: {"npz": "mnist_test.npz", "rows": OOD_ROWS}},
        },
        "csid": {sets["csid"]: {"npz": "cifar10_test.npz", "rows": CSID_ROWS}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def counted(kit):
    net = so.models.load_model("resnet20_cifar10")
    calls: list[int] = []
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    handle = conv.register_forward_pre_hook(lambda *_: calls.append(1))
    yield net, calls
    handle.remove()


def test_same_images_under_other_names_reuse_features(counted, kit, tmp_path):
    net, calls = counted
    cache = FeatureCache(tmp_path / "cache")
    alpha = _bench_file(tmp_path, kit, "alpha", {"tin": "tin", "mnist": "mnist", "csid": "c10"})
    beta = _bench_file(
        tmp_path, kit, "beta", {"tin": "tiny_imgnet", "mnist": "digits", "csid": "cifar_again"}
    )
    calls.clear()
    first = so.evaluate(net, alpha, methods="msp,react", cache=cache, progress=False, fsood=True)
    assert calls, "the first evaluation runs the network"
    calls.clear()
    second = so.evaluate(
        net,
        beta,
        methods="msp,scale,react",
        params={"react": {"percentile": 95}},
        cache=cache,
        progress=False,
        fsood=True,
    )
    assert calls == []  # other benchmark and set names, other methods: no forward pass
    a = first.set_index(["method", "dataset"])
    b = second.set_index(["method", "dataset"])
    assert a.loc[("msp", "tin"), "AUROC"] == pytest.approx(b.loc[("msp", "tiny_imgnet"), "AUROC"])
    names = {n for e in cache.list() for n in e.names}
    assert {"alpha_tin", "beta_tiny_imgnet", "alpha_mnist", "beta_digits"} <= names
    assert {"alpha_c10", "beta_cifar_again"} <= names  # the csid set, reused too
    assert all(e.kind == "features" and e.state == "complete" for e in cache.list())

    calls.clear()
    capped = so.evaluate(
        net, alpha, methods="energy,ash_s", cache=cache, progress=False, max_samples=20
    )
    assert calls == []  # --max-samples rows are sliced from the cached full sets
    assert set(capped["n_id"]) == {20}
    fresh = so.evaluate(
        net, alpha, methods="energy", cache=False, progress=False, max_samples=20
    ).set_index(["method", "dataset"])
    sliced = capped.set_index(["method", "dataset"])
    for set_name in ("tin", "mnist"):
        assert sliced.loc[("energy", set_name), "AUROC"] == pytest.approx(
            fresh.loc[("energy", set_name), "AUROC"], abs=1e-9
        )
    torch.manual_seed(0)  # nothing random above; keeps later tests independent
