"""Adapter, architectures, checkpoints and transforms on small random models (no kit needed)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from PIL import Image
from torch import nn
from torchvision.models.convnext import CNBlockConfig

from shapeood.head import LinearHead
from shapeood.models import (
    CifarResNet,
    FeatureModel,
    adapt,
    create,
    infer_architecture,
    load_model,
    transform_for,
)
from shapeood.models.factory import torchvision_cfg
from shapeood.models.mobilenet_v2_tf import Conv2dSame, default_graph


def _vgg_small() -> nn.Module:
    # VGG's constructor allocates a 100M-parameter classifier: build it on the meta device and
    # give it real, small parts of the same structure.
    with torch.device("meta"):
        model = tvm.VGG(nn.Sequential(), num_classes=5, init_weights=False)
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    model.classifier = nn.Sequential(
        nn.Linear(8 * 7 * 7, 24), nn.ReLU(), nn.Dropout(), nn.Linear(24, 16), nn.ReLU(),
        nn.Dropout(), nn.Linear(16, 5),
    )  # fmt: skip
    return model


def _tv_resnet(**kwargs) -> nn.Module:
    """A one-block-per-stage torchvision ResNet (the class of WideResNet and ResNeXt)."""
    return tvm.ResNet(tvm.resnet.Bottleneck, [1, 1, 1, 1], num_classes=5, **kwargs)


# name -> (builder, input size, expects a feature map)
FAMILIES = {
    "tv_resnet18": (lambda: tvm.resnet18(num_classes=5), 32, True),
    "tv_wide_resnet": (lambda: _tv_resnet(width_per_group=128), 32, True),
    "tv_resnext": (lambda: _tv_resnet(groups=4, width_per_group=8), 32, True),
    "tv_densenet": (lambda: tvm.DenseNet(8, (2, 2), 16, num_classes=5), 32, True),
    "tv_mobilenet_v2": (lambda: tvm.mobilenet_v2(num_classes=5, width_mult=0.25), 32, True),
    "tv_mobilenet_v3": (lambda: tvm.mobilenet_v3_small(num_classes=5), 32, True),
    "tv_efficientnet": (lambda: tvm.efficientnet_b0(num_classes=5), 32, True),
    "tv_convnext": (
        lambda: tvm.ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=5),
        32,
        True,
    ),
    "tv_regnet": (lambda: tvm.regnet_y_400mf(num_classes=5), 32, True),
    "tv_vgg": (_vgg_small, 32, True),
    "tv_vit": (lambda: tvm.VisionTransformer(32, 8, 1, 2, 16, 32, num_classes=5), 32, False),
    "tv_vit_prelogits": (
        lambda: tvm.VisionTransformer(32, 8, 1, 2, 16, 32, num_classes=5, representation_size=8),
        32,
        False,
    ),
    "tv_swin": (
        lambda: tvm.SwinTransformer([4, 4], 16, [1, 1], [2, 2], [2, 2], num_classes=5), 32, True
    ),
    "tv_shufflenet": (lambda: tvm.shufflenet_v2_x0_5(num_classes=5), 32, True),
    "timm_resnet18": (lambda: timm.create_model("resnet18", num_classes=5), 32, True),
    "timm_vit_tiny": (
        lambda: timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=5), 32, False
    ),
    "timm_convnext_atto": (lambda: timm.create_model("convnext_atto", num_classes=5), 32, True),
    "kit_resnet20_cifar": (lambda: create("resnet20_cifar", num_classes=5), 32, True),
    "kit_densenet100_cifar": (lambda: create("densenet100_cifar", num_classes=5), 32, True),
    "kit_resnet18_32x32": (lambda: create("resnet18_32x32", num_classes=5), 32, True),
    "kit_mobilenet_v2_tf": (lambda: create("mobilenet_v2_tf"), 64, True),
}  # fmt: skip


def _perturb_eval_stats(model: nn.Module) -> None:
    """Random BatchNorm statistics so that eval mode is not a plain identity."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_head_of_features_equals_model_output(family: str) -> None:
    builder, size, has_map = FAMILIES[family]
    torch.manual_seed(0)
    model = builder().eval()
    with torch.no_grad():
        _perturb_eval_stats(model)
        fm = adapt(model)
        x = torch.randn(3, 3, size, size)
        expected = model(x)
        h, logits = fm.features_and_logits(x)
        assert h.ndim == 2 and h.shape[0] == 3
        assert fm.head.in_features == h.shape[1] == fm.num_features
        assert fm.head.num_classes == expected.shape[1]
        torch.testing.assert_close(fm.head(h), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fm.features(x), h, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(fm(x), expected)
        assert isinstance(fm.layer_name, str) and fm.layer_name
        assert isinstance(model.get_submodule(fm.layer_name), (nn.Linear, nn.Conv2d))
        cfg = fm.pretrained_cfg
        assert {"mean", "std", "input_size", "resize", "num_classes", "interpolation"} <= set(cfg)
        if has_map:
            fmap = fm.feature_map(x)
            assert fmap.ndim == 4 and fmap.shape[0] == 3
        else:
            with pytest.raises(ValueError, match="feature map"):
                fm.feature_map(x)


@pytest.mark.parametrize(
    "family", ["tv_resnet18", "tv_densenet", "tv_swin", "kit_densenet100_cifar"]
)
def test_pooled_feature_map_is_the_feature(family: str) -> None:
    """For global-average-pooling heads ``h`` is the spatial mean of ``feature_map``."""
    builder, size, _ = FAMILIES[family]
    torch.manual_seed(1)
    model = builder().eval()
    fm = adapt(model)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(
            fm.feature_map(x).mean(dim=(2, 3)), fm.features(x), rtol=1e-5, atol=1e-5
        )


def test_layer_names_of_multi_linear_heads() -> None:
    assert adapt(tvm.mobilenet_v3_small(num_classes=5)).layer_name == "classifier.3"
    assert adapt(_vgg_small()).layer_name == "classifier.6"
    assert adapt(tvm.resnet18(num_classes=5)).layer_name == "fc"
    assert adapt(timm.create_model("convnext_atto", num_classes=5)).layer_name == "head.fc"
    assert adapt(create("resnet20_cifar")).layer_name == "linear"


class _CustomNet(nn.Module):
    def __init__(self, post: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Linear(6, 4)
        self.post = post

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.out(self.pool(self.body(x)).flatten(1))
        return F.log_softmax(logits, dim=1) if self.post else logits


def test_named_head_for_any_module() -> None:
    torch.manual_seed(0)
    model = _CustomNet().eval()
    x = torch.randn(2, 3, 10, 10)
    for head in ("out", model.out):
        fm = adapt(model, head=head, map_layer="body")
        with torch.no_grad():
            torch.testing.assert_close(fm.head(fm.features(x)), model(x))
            assert fm.feature_map(x).shape == (2, 6, 8, 8)
        assert fm.layer_name == "out"
    seq = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    fm = adapt(seq, head="3")
    with torch.no_grad():
        torch.testing.assert_close(fm.head(fm.features(x)), seq(x))
    with pytest.raises(ValueError, match="map_layer"):
        fm.feature_map(x)


def test_unsupported_model_says_how_to_name_the_head() -> None:
    assert adapt(_CustomNet()).layer_name == "out"  # found by a probe forward
    with pytest.raises(ValueError, match=r"head='NAME'"):
        adapt(_CustomNet(post=True))  # log_softmax after the last linear layer
    with pytest.raises(ValueError, match="no module 'nope'"):
        adapt(_CustomNet(), head="nope")
    with pytest.raises(ValueError, match=r"not .*nn.Linear"):
        adapt(_CustomNet(), head="pool")
    with pytest.raises(ValueError, match="returns unchanged"):
        adapt(_CustomNet(post=True).eval(), head="out").features(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="num_classes=0"):
        adapt(timm.create_model("resnet18", num_classes=0))
    with pytest.raises(ValueError, match="differs from the model's output"):
        adapt(_SoftmaxResNet(8).eval()).features(torch.randn(2, 3, 16, 16))


class _SoftmaxResNet(CifarResNet):
    """Follows the timm contract but returns probabilities: the split must refuse it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).softmax(dim=1)


def test_head_follows_parameter_updates_and_adapt_is_idempotent() -> None:
    model = create("resnet20_cifar")
    fm = adapt(model)
    assert adapt(fm) is fm
    assert isinstance(fm, FeatureModel) and isinstance(fm.head, LinearHead)
    with torch.no_grad():
        model.linear.weight.add_(1.0)
    torch.testing.assert_close(fm.head.weight, model.linear.weight.detach())


@pytest.mark.parametrize("depth", [8, 20, 44])
def test_cifar_resnet_any_depth(depth: int) -> None:
    model = create(f"resnet{depth}_cifar", num_classes=7)
    blocks = (depth - 2) // 6
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == blocks
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth  # every conv and the linear layer count in the depth
    # option A: the shortcut has no parameters, so no key names one
    assert not any("shortcut" in k for k in model.state_dict())
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 64, 8, 8)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        create("resnet21_cifar")


def test_densenet_layout_matches_the_dice_checkpoint_names() -> None:
    model = create("densenet100_cifar", num_classes=100)
    state = model.state_dict()
    learnable = sum(p.numel() for p in model.parameters())
    assert learnable == 800_032  # the CIFAR-100 count of the kit README
    assert sum(p.numel() for p in create("densenet100_cifar").parameters()) == 769_162
    assert state["conv1.weight"].shape == (24, 3, 3, 3)
    assert state["block1.layer.15.conv1.weight"].shape == (48, 24 + 15 * 12, 1, 1)
    assert state["trans1.conv1.weight"].shape == (108, 216, 1, 1)
    assert state["trans2.conv1.weight"].shape == (150, 300, 1, 1)
    assert state["bn1.weight"].shape == (342,) and state["fc.weight"].shape == (100, 342)
    with torch.no_grad():
        fmap = model.forward_features(torch.randn(1, 3, 32, 32))
    assert fmap.shape == (1, 342, 8, 8) and bool((fmap >= 0).all())


def test_resnet18_32x32_uses_openood_state_dict_names() -> None:
    state = create("resnet18_32x32", num_classes=100).state_dict()
    for key in (
        "conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
        "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_mean",
        "layer4.1.conv2.weight", "fc.weight", "fc.bias",
    ):  # fmt: skip
        assert key in state, key
    assert "layer1.0.shortcut.0.weight" not in state
    assert state["fc.weight"].shape == (100, 512)
    assert sum(v.numel() for k, v in state.items() if "num_batches" not in k) > 11_000_000


def test_tf_same_padding_is_asymmetric_for_stride_two() -> None:
    conv = Conv2dSame(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # output = top-left input of each window
        conv.bias.zero_()
        x = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
        out = conv(x)
    # TF pads 0 before / 1 after: windows start at rows/cols 0 and 2, no shift
    torch.testing.assert_close(out[0, 0], x[0, 0, ::2, ::2])
    conv1 = Conv2dSame(1, 1, 3, stride=1)
    assert conv1(torch.randn(1, 1, 5, 7)).shape == (1, 1, 5, 7)


def test_mobilenet_graph_has_the_kit_layout() -> None:
    graph = default_graph()
    assert len(graph) == 66
    ops = [layer["op"] for layer in graph]
    assert ops.count("CONV_2D") == 36 and ops.count("DEPTHWISE_CONV_2D") == 17
    assert ops.count("ADD") == 10
    assert graph[9] == {"id": 9, "op": "ADD", "inputs": [8, 5]}
    model = create("mobilenet_v2_tf")
    assert model.classifier.weight.shape == (1000, 1280)
    assert create("mobilenet_v2_tf", num_classes=1001).classifier.out_features == 1001
    with pytest.raises(ValueError, match="1000"):
        create("mobilenet_v2_tf", num_classes=10)


def test_mobilenet_kit_weights_drop_the_background_row() -> None:
    model = create("mobilenet_v2_tf")
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier")}
    w = torch.randn(1001, 1280, 1, 1)
    b = torch.randn(1001)
    state.update({"l63.weight": w, "l63.bias": b})
    converted = model.convert_kit_state_dict(state)
    torch.testing.assert_close(converted["classifier.weight"], w[1:, :, 0, 0])
    torch.testing.assert_close(converted["classifier.bias"], b[1:])
    full = create("mobilenet_v2_tf", weights=state, num_classes=1001)
    torch.testing.assert_close(full.classifier.bias, b)


@pytest.mark.parametrize("wrapper", ["plain", "module_prefix", "state_dict", "both"])
def test_checkpoint_round_trip(tmp_path, wrapper: str) -> None:
    torch.manual_seed(3)
    source = create("resnet20_cifar", num_classes=10)
    _perturb_eval_stats(source)
    state = source.state_dict()
    if wrapper in ("module_prefix", "both"):
        state = {f"module.{k}": v for k, v in state.items()}
    if wrapper in ("state_dict", "both"):
        state = {"epoch": 3, "state_dict": state}
    path = tmp_path / "ckpt.th"
    torch.save(state, path)
    x = torch.randn(2, 3, 32, 32)
    for model in (create("resnet20_cifar", weights=path), load_model(path)):
        assert model.pretrained_cfg["input_size"] == (3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(model(x), source.eval()(x))


def test_checkpoint_without_batch_counters_and_npz(tmp_path) -> None:
    torch.manual_seed(4)
    source = create("densenet40_cifar", num_classes=100)
    state = {k: v.numpy() for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / "weights.npz"
    np.savez(path, meta_json=np.array('{"depth": 40}'), **state)
    loaded = load_model(path)
    assert loaded.pretrained_cfg["architecture"] == "densenet40_cifar"
    assert loaded.fc.out_features == 100
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source.eval()(x))


def test_mismatched_checkpoint_names_the_problem(tmp_path) -> None:
    path = tmp_path / "r20.pth"
    torch.save(create("resnet20_cifar").state_dict(), path)
    with pytest.raises(ValueError, match="missing"):
        create("resnet32_cifar", weights=path)
    torch.save({"state_dict": create("resnet20_cifar", num_classes=10).state_dict()}, path)
    with pytest.raises(ValueError, match="shape"):
        create("resnet20_cifar", weights=path, num_classes=100)
    with pytest.raises(FileNotFoundError, match="not found"):
        create("resnet20_cifar", weights=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="unknown architecture"):
        create("resnet50_imagenet")
    with pytest.raises(ValueError, match="cannot resolve"):
        load_model("no_such_model")


def test_infer_architecture_from_keys() -> None:
    for name in ("resnet32_cifar", "densenet100_cifar", "resnet18_32x32"):
        assert infer_architecture(create(name).state_dict()) == name
    with pytest.raises(ValueError, match="cannot tell"):
        infer_architecture({"weight": torch.zeros(1)})


def test_load_model_torchvision_and_timm_without_download() -> None:
    model = load_model("torchvision:resnet18", random_weights=True)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["resize"] == 256
    assert cfg["num_classes"] == 1000
    assert adapt(model).layer_name == "fc"
    tm = load_model("timm:resnet18", random_weights=True)
    assert tm.pretrained_cfg["resize"] == int(224 / tm.pretrained_cfg["crop_pct"])
    assert adapt(tm).head.num_classes == 1000


def test_torchvision_weights_give_their_preset_cfg(tmp_path) -> None:
    cfg = torchvision_cfg("resnet50", "IMAGENET1K_V2")  # reads the enum only, no download
    assert cfg["resize"] == 232 and cfg["input_size"] == (3, 224, 224)
    assert cfg["num_classes"] == 1000 and cfg["interpolation"] == "bilinear"
    assert cfg["mean"] == pytest.approx((0.485, 0.456, 0.406))
    assert torchvision_cfg("vit_b_16", "DEFAULT")["interpolation"] == "bilinear"
    source = tvm.resnet18(num_classes=3).eval()
    path = tmp_path / "tv.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    with pytest.raises(ValueError, match="shape"):
        load_model("torchvision:resnet18", weights=path, num_classes=1000)  # vs 3 classes
    assert load_model("torchvision:resnet18", weights=path).fc.out_features == 3  # read from it


def test_transform_for_pil_and_tensor_match_cfg() -> None:
    model = create("densenet100_cifar")
    transform = transform_for(model)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    from_tensor = transform(torch.from_numpy(img).permute(2, 0, 1))
    from_pil = transform(Image.fromarray(img))
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(3, 1, 1)
    expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - mean) / std
    assert from_tensor.dtype == torch.float32 and from_tensor.shape == (3, 32, 32)
    torch.testing.assert_close(from_tensor, expected)
    torch.testing.assert_close(from_pil, expected)
    assert repr(transform) == repr(transform_for(model.pretrained_cfg))


def _steps_one_by_one(transform, image):
    for step in transform.transforms:
        image = step(image)
    return image


@pytest.mark.parametrize(
    ("resize", "crop", "shape"),
    [
        (32, 32, (3, 32, 32)),  # fused: the kit's CIFAR case
        (32, (40, 32), (3, 40, 32)),  # fused: shorter side 32, crop = the whole image
        (32, 28, (3, 32, 32)),  # a real crop: the steps run
        (24, 24, (3, 32, 32)),  # a real resize: the steps run
        (32, 32, (1, 32, 32)),  # one channel: the steps run
    ],
)
def test_transform_fused_path_is_bit_equal_to_the_steps(resize, crop, shape) -> None:
    """The one-pass ``(x / 255 - mean) / std`` equals the five torchvision steps bit for bit,
    for contiguous, channels-last, strided and ``tv_tensors.Image`` inputs, and on the PIL
    image; pipelines it does not cover give the steps' own result."""
    from torchvision import tv_tensors

    transform = transform_for(create("resnet20_cifar").pretrained_cfg, resize=resize, crop=crop)
    rng = np.random.default_rng(sum(shape) + resize)
    hwc = rng.integers(0, 256, size=(shape[1], shape[2], shape[0]), dtype=np.uint8)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    wide = torch.from_numpy(rng.integers(0, 256, size=(shape[0], shape[1], 2 * shape[2])))
    wide = wide.to(torch.uint8)
    inputs = {
        "contiguous": chw.contiguous(),
        "permuted": chw,
        "strided": wide[:, :, ::2],
        "image": tv_tensors.Image(chw.contiguous()),
    }
    fusable = shape[0] == 3 and resize == 32 and crop in (32, (40, 32))
    for name, pixels in inputs.items():
        assert (transform._fused(pixels) is not None) == fusable, name
        expected = _steps_one_by_one(transform, pixels)
        got = transform(pixels)
        assert type(got) is type(expected) and got.dtype == torch.float32, name
        assert torch.equal(got, expected), name
    if fusable:  # and the decoded pixels give what the PIL image gives
        assert transform._fused(Image.fromarray(hwc)) is None
        assert torch.equal(transform(Image.fromarray(hwc)), transform(chw))


def test_transform_fused_path_leaves_bad_pipelines_to_the_steps() -> None:
    """A zero std or an edited step list is not fused: the steps (and their errors) apply."""
    from torchvision.transforms import v2

    transform = transform_for({"mean": (0.5,) * 3, "std": (0.0, 1.0, 1.0), "input_size": (3, 8, 8)})
    pixels = torch.zeros((3, 8, 8), dtype=torch.uint8)
    assert transform._fused(pixels) is None
    with pytest.raises(ValueError, match="std evaluated to zero"):
        transform(pixels)
    edited = transform_for({"mean": (0.5,) * 3, "std": (0.5,) * 3, "input_size": (3, 8, 8)})
    edited.transforms.insert(3, v2.RandomHorizontalFlip(p=1.0))
    assert edited._fused(pixels) is None
    flipped = torch.arange(192, dtype=torch.uint8).reshape(3, 8, 8)
    assert torch.equal(edited(flipped), (flipped.flip(-1).float() / 255 - 0.5) / 0.5)


def test_transform_for_resize_and_crop() -> None:
    cfg = create("mobilenet_v2_tf").pretrained_cfg
    transform = transform_for(cfg)
    out = transform(torch.full((3, 300, 400), 128, dtype=torch.uint8))
    assert out.shape == (3, 224, 224)
    # (x - 128) / 128 in uint8 units: the TF MobileNet scaling
    torch.testing.assert_close(out, torch.zeros_like(out), atol=1e-6, rtol=0)
    assert "Resize(size=[256]" in repr(transform)
    assert "CenterCrop(size=[224, 224])" in repr(transform)
    small = transform_for(cfg, resize=40, crop=32)(torch.zeros(3, 50, 60, dtype=torch.uint8))
    assert small.shape == (3, 32, 32)
    assert repr(transform_for(cfg, resize=40)) != repr(transform)
    with pytest.raises(ValueError, match="interpolation"):
        transform_for({**cfg, "interpolation": "fancy"})
    with pytest.raises(ValueError, match="pretrained_cfg"):
        transform_for(nn.Linear(2, 2))
