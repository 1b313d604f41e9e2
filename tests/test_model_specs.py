"""Every ``--model`` form on real checkpoints written here, and heads found without ``head=``."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from torch import nn

import shapeood as so
from shapeood.models import adapt, find_head, load_model


def _tv_resnet18_10(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = tvm.resnet18(num_classes=10).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrong load shows
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="module")
def resnet18_ckpt(tmp_path_factory):
    """A 10-class torchvision ResNet-18 saved as {'state_dict': {'module.' + key: tensor}}."""
    net = _tv_resnet18_10()
    path = tmp_path_factory.mktemp("ckpt") / "resnet18_c10.pth"
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 7, "state_dict": state}, path)
    return path, net


def _same_outputs(a: nn.Module, b: nn.Module, size: int = 32) -> None:
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_checkpoint_with_arch_and_num_classes_from_its_head(resnet18_ckpt):
    path, net = resnet18_ckpt
    model = load_model(path, arch="torchvision:resnet18")
    assert model.fc.out_features == 10
    _same_outputs(model, net)
    tv = load_model("torchvision:resnet18", weights=path, num_classes=10)
    _same_outputs(tv, net)
    assert adapt(tv).layer_name == "fc"


def test_checkpoint_without_arch_is_an_error_that_says_how_to_name_it(resnet18_ckpt):
    path, _ = resnet18_ckpt
    with pytest.raises(ValueError, match=r"--arch.*torchvision:NAME") as err:
        load_model(path)
    assert "torchvision ResNet" in str(err.value)


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    net = _tv_resnet18_10(seed=2)
    path = tmp_path / "r18.safetensors"
    save_file({f"_orig_mod.{k}": v.contiguous() for k, v in net.state_dict().items()}, path)
    _same_outputs(load_model(path, arch="torchvision:resnet18"), net)


def test_no_weights_needs_random_weights():
    for spec in ("torchvision:resnet18", "timm:resnet18", "resnet20_cifar"):
        with pytest.raises(ValueError, match="--random-weights"):
            load_model(spec)
    assert load_model("resnet20_cifar", random_weights=True).linear.out_features == 10
    assert (
        load_model("torchvision:resnet18", random_weights=True, num_classes=7).fc.out_features == 7
    )


def test_torchvision_enum_with_other_num_classes_is_refused():
    with pytest.raises(ValueError, match="1000 classes"):
        load_model("torchvision:resnet18", weights="IMAGENET1K_V1", num_classes=10)
    with pytest.raises(ValueError, match="DEFAULT"):
        load_model("torchvision:resnet18", weights="NOT_AN_ENUM")


FACTORY = """
import torch
from torch import nn


class TwoPart(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


def build(num_classes=3):
    torch.manual_seed(0)
    return TwoPart(num_classes)
"""


@pytest.fixture()
def factory_file(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "mynets.py"


def test_python_factory_by_module_and_by_file(factory_file, tmp_path):
    by_module = load_model("python:mynets:build", num_classes=5)
    assert by_module.fc.out_features == 5
    by_file = load_model(f"{factory_file}:build")
    assert by_file.fc.out_features == 3
    fm = adapt(by_module)  # a two-module net with a single fc: found without head=
    assert fm.layer_name == "fc"
    torch.save(by_module.state_dict(), tmp_path / "w.pth")
    with torch.no_grad():
        by_module.fc.bias.add_(1.0)
    reloaded = load_model("python:mynets:build", weights=tmp_path / "w.pth", num_classes=5)
    assert not torch.equal(reloaded.fc.bias, by_module.fc.bias)
    with pytest.raises(ValueError, match="no function 'nope'"):
        load_model("python:mynets:nope")
    with pytest.raises(ValueError, match="name the function"):
        load_model(factory_file)


def test_pickled_model_needs_trust_pickle(factory_file, tmp_path):
    from mynets import build

    net = build()
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    with pytest.raises(ValueError, match=r"--trust-pickle.*runs code|runs code.*--trust-pickle"):
        load_model(path)
    loaded = load_model(path, trust_pickle=True)
    _same_outputs(loaded, net, size=12)


class _Body(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 20, 3)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


class _TwoModuleNet(nn.Module):
    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.backbone = _Body()
        self.proj = nn.Linear(20, 20)
        self.fc = nn.Linear(20, 4)
        self.aux = nn.Linear(20, 4) if extra else None

    def forward(self, x):
        h = torch.relu(self.proj(self.backbone(x)))
        return self.fc(h)


class _Tuple(_TwoModuleNet):
    def forward(self, x):
        h = torch.relu(self.proj(self.backbone(x)))
        return self.fc(h), h


def test_adapt_finds_the_head_by_tracing_and_checks_it():
    torch.manual_seed(0)
    net = _TwoModuleNet(extra=True).eval()
    assert find_head(net)[0] == "fc"
    fm = adapt(net)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fm.head(fm.features(x)), net(x))
    fs = so.extract(net, torch.utils.data.TensorDataset(x, torch.zeros(3, dtype=torch.long)),
                    cache=False, progress=False)  # fmt: skip
    assert fs.features.shape == (3, 20)
    ish = so.train.apply_ish(_TwoModuleNet())  # its default percentile
    assert type(ish.fc).__name__ == "ISHLinear" and type(ish.proj) is nn.Linear


def test_adapt_lists_the_candidates_when_it_cannot_choose():
    with pytest.raises(ValueError, match=r"returns tuple"):
        adapt(_Tuple())

    class NoProbe(nn.Module):  # no first layer to read an input shape from
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 6)
            self.fc = nn.Linear(6, 4)
            self.head = nn.Linear(4, 4)

        def forward(self, x):
            return self.head(self.fc(self.embed(x).mean(1)))

    with pytest.raises(ValueError, match=r"several layers .* 'fc', 'head'"):
        adapt(NoProbe())


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from shapeood.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_model_forms_on_a_kit_archive(kit, resnet18_ckpt, factory_file, tmp_path, capsys):
    path, net = resnet18_ckpt
    common = ["--data", "cifar10_exact_sample", "--no-cache", "--quiet", "--device", "cpu"]
    code, out, err = _cli(capsys, "extract", "--model", str(path), "--arch",
                          "torchvision:resnet18", *common)  # fmt: skip
    assert code == 0, err
    assert "D        512" in out and "classes  10" in out
    code, out, err = _cli(capsys, "extract", "--model", str(path), *common)
    assert code == 2 and "--arch" in err and "Traceback" not in err
    torch.save(net, tmp_path / "whole.pt")
    code, out, err = _cli(capsys, "extract", "--model", str(tmp_path / "whole.pt"), *common)
    assert code == 2 and "--trust-pickle" in err and "Traceback" not in err
    code, out, err = _cli(capsys, "extract", "--model", str(tmp_path / "whole.pt"),
                          "--trust-pickle", *common)  # fmt: skip
    assert code == 0, err
    code, out, err = _cli(capsys, "extract", "--model", "torchvision:resnet18", "--num-classes",
                          "10", *common)  # fmt: skip
    assert code == 2 and "--random-weights" in err
    code, out, err = _cli(capsys, "extract", "--model", f"{factory_file}:build", "--num-classes",
                          "10", *common)  # fmt: skip
    assert code == 0, err
    assert "split at fc" in out and "D        8" in out
    with np.load(kit / "cifar10_exact_sample.npz") as z:
        assert f"N        {len(z['labels'])}" in out


def test_list_models_names_every_form(capsys):
    code, out, err = _cli(capsys, "list", "models")
    assert code == 0, err
    names = (
        "resnet20_cifar10",
        "torchvision:NAME",
        "timm:NAME",
        "python:MODULE:FUNCTION",
        "--trust-pickle",
        "--arch",
        "resnet{20,32,44,56,110,...}_cifar",
        "--random-weights",
    )
    for text in names:
        assert text in out, text
