"""ISH layers beyond the oracle: conv variant, model conversion, eval mode, mixed precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from shapeood import shaping
from shapeood.train import ISHConv2d, ISHLinear, apply_ish, ish_layers, remove_ish


class TinyNet(nn.Module):
    """conv -> relu -> pool -> fc, the layout of the CIFAR backbones (head named ``fc``)."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.proj = nn.Linear(8, 16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.fc(F.relu(self.proj(h)))


def backward_of(layer: nn.Module, x: torch.Tensor, grad_out_seed: int = 0):
    x = x.clone().requires_grad_(True)
    out = layer(x)
    g = torch.randn(
        out.shape, generator=torch.Generator().manual_seed(grad_out_seed), dtype=out.dtype
    )
    out.backward(g)
    bias = None if layer.bias is None else layer.bias.grad.clone()
    return out.detach(), x.grad.clone(), layer.weight.grad.clone(), bias, g


def test_linear_weight_gradient_is_shaped_rows_for_3d_input() -> None:
    torch.manual_seed(0)
    plain = nn.Linear(40, 6).double()
    ish = ISHLinear.from_linear(nn.Linear(40, 6).double(), percentile=70)
    ish.load_state_dict(plain.state_dict())
    x = torch.randn(3, 4, 40, dtype=torch.float64)  # signed values, extra token dim
    out_p, gx_p, _, gb_p, g = backward_of(plain, x)
    out_i, gx_i, gw_i, gb_i, _ = backward_of(ish, x)
    assert torch.equal(out_p, out_i)
    torch.testing.assert_close(gx_i, gx_p)
    torch.testing.assert_close(gb_i, gb_p)
    shaped = shaping.ish_shape(x.reshape(-1, 40), percentile=70)
    torch.testing.assert_close(gw_i, g.reshape(-1, 6).T @ shaped)
    assert int((shaped != 0).sum(1).max()) == int(40 * 0.3)


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [
        ({"kernel_size": 3, "padding": 1}, 8),
        ({"kernel_size": 3, "stride": 2, "padding": 1, "bias": False}, 9),
        ({"kernel_size": 3, "padding": "same", "dilation": 2, "groups": 2}, 7),
        ({"kernel_size": 1}, 5),
    ],
)
def test_conv_gradients(kwargs: dict, size: int) -> None:
    torch.manual_seed(1)
    plain = nn.Conv2d(4, 6, **kwargs).double()
    ish = ISHConv2d.from_conv(plain, percentile=80)
    assert ish.weight is plain.weight
    x = torch.relu(torch.randn(3, 4, size, size, dtype=torch.float64))
    out_p, gx_p, _, gb_p, g = backward_of(plain, x)
    plain.zero_grad()
    out_i, gx_i, gw_i, gb_i, _ = backward_of(ish, x)
    torch.testing.assert_close(out_i, out_p)
    torch.testing.assert_close(gx_i, gx_p)
    if gb_p is not None:
        torch.testing.assert_close(gb_i, gb_p)
    shaped = shaping.ish_shape(x.flatten(1), percentile=80).view_as(x)  # per sample over C*H*W
    w = plain.weight.detach().clone().requires_grad_(True)
    reference = F.conv2d(shaped, w, None, plain.stride, plain.padding, plain.dilation, plain.groups)
    (expected,) = torch.autograd.grad(reference, w, g)
    torch.testing.assert_close(gw_i, expected)


def test_conv_rejects_what_it_cannot_shape() -> None:
    with pytest.raises(ValueError, match="padding_mode"):
        ISHConv2d(3, 4, 3, padding=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="symmetric"):
        ISHConv2d(3, 4, 2, padding="same")


def test_apply_all_keeps_parameters_state_dict_and_outputs() -> None:
    torch.manual_seed(2)
    model = TinyNet().train()
    keys = list(model.state_dict())
    params = {n: p for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(6, 3, 8, 8)
    before = model(x).detach()
    assert apply_ish(model, percentile=50, layers="all") is model
    assert sorted(ish_layers(model)) == ["conv", "fc", "proj"]
    assert isinstance(model.bn, nn.BatchNorm2d)
    assert list(model.state_dict()) == keys
    assert all(p is params[n] for n, p in model.named_parameters())
    torch.testing.assert_close(model(x).detach(), before)
    fc_before = model.fc.weight.detach().clone()
    model(x).sum().backward()
    optimizer.step()  # the optimiser built before the conversion sees the gradients
    assert not torch.equal(model.fc.weight.detach(), fc_before)
    assert model.fc.percentile == 50 and model.conv.percentile == 50

    remove_ish(model)
    assert ish_layers(model) == []
    assert type(model.fc) is nn.Linear and type(model.conv) is nn.Conv2d
    assert all(p is params[n] for n, p in model.named_parameters())


def test_apply_by_name_and_errors() -> None:
    model = TinyNet()
    apply_ish(model, layers=["proj"])
    assert ish_layers(model) == ["proj"]
    with pytest.raises(ValueError, match="no layer named"):
        apply_ish(model, layers="nope")
    with pytest.raises(ValueError, match="BatchNorm2d"):
        apply_ish(model, layers="bn")
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        apply_ish(model, percentile=100)
    with pytest.raises(ValueError, match=r"pass ISH percentile=85 for 85 %"):
        apply_ish(model, percentile=0.85)
    with pytest.raises(ValueError, match="keeps"):
        ISHLinear(4, 2, percentile=90)
    with pytest.raises(ValueError, match="wrap"):
        apply_ish(nn.Linear(4, 2))


def test_eval_mode_and_frozen_weight_are_plain() -> None:
    torch.manual_seed(3)
    layer = ISHLinear(32, 4)
    x = torch.rand(5, 32)
    plain_grad = torch.autograd.grad(F.linear(x, layer.weight, layer.bias).sum(), layer.weight)[0]
    layer.eval()
    (grad,) = torch.autograd.grad(layer(x).sum(), layer.weight)
    torch.testing.assert_close(grad, plain_grad)
    layer.train()
    (grad,) = torch.autograd.grad(layer(x).sum(), layer.weight)
    assert not torch.allclose(grad, plain_grad)
    layer.weight.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    layer(xg).sum().backward()
    torch.testing.assert_close(xg.grad, layer.weight.sum(0).expand_as(x))


def test_cpu_autocast_bfloat16() -> None:
    torch.manual_seed(4)
    model = apply_ish(TinyNet(), layers="all")
    x = torch.randn(4, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    F.cross_entropy(out.float(), torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name


def test_apply_head_finds_final_linear_through_adapter() -> None:
    from torchvision.models import mobilenet_v2

    from shapeood.models import adapt, create

    model = TinyNet()
    apply_ish(model)  # the adapter finds the final linear layer named fc (checked numerically)
    assert ish_layers(model) == ["fc"]
    apply_ish(TinyNet(), head="fc")
    assert type(model.proj) is nn.Linear

    mobile = mobilenet_v2(num_classes=3, width_mult=0.25)  # classifier = Dropout, Linear
    apply_ish(mobile)
    assert ish_layers(mobile) == ["classifier.1"] == [adapt(mobile).layer_name]
    apply_ish(mobile, percentile=50)  # converting twice only updates the percentile
    assert mobile.classifier[1].percentile == 50

    densenet = create("densenet100_cifar")
    fm = adapt(densenet)
    assert apply_ish(fm) is fm  # a FeatureModel converts its wrapped model
    assert ish_layers(densenet) == [fm.layer_name]
    assert isinstance(densenet.get_submodule(fm.layer_name), ISHLinear)
    remove_ish(fm)
    assert ish_layers(densenet) == []


def test_all_layers_of_a_kit_network_train() -> None:
    from shapeood.models import create

    torch.manual_seed(6)
    model = create("resnet20_cifar").train()
    convs = [n for n, m in model.named_modules() if type(m) is nn.Conv2d]
    apply_ish(model, layers="all")
    assert set(convs) <= set(ish_layers(model)) and len(ish_layers(model)) == len(convs) + 1
    x = torch.randn(2, 3, 32, 32)
    F.cross_entropy(model(x), torch.tensor([1, 2])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    remove_ish(model)
    assert ish_layers(model) == []
