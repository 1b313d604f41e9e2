"""Split any classifier into pooled penultimate features and its final linear layer.

``adapt(model)`` returns a ``FeatureModel`` whose ``features(x)`` is ``h`` (N, D), the input of
the model's FINAL linear layer, so that ``head(features(x)) == model(x)`` in eval mode; every
activation-shaping method acts on ``h``. For heads that are more than one Linear (VGG's MLP,
MobileNetV3's Linear-Hardswish-Dropout-Linear, ConvNeXt's LayerNorm-Flatten-Linear) ``h`` is the
input of the last Linear, as in the ASH/ReAct code for those families.

How the split is found, in order:

1. ``head=`` given (a dotted module name such as ``"fc"`` or the module itself): ``h`` is caught
   on the way into that layer (a forward pre-hook); the first call checks that the layer's
   output is the model's output.
2. torchvision families (ResNet/WideResNet/ResNeXt, DenseNet, MobileNetV2/V3, EfficientNet,
   ConvNeXt, RegNet, VGG, ViT, Swin, ShuffleNetV2, GoogLeNet, Inception3, MNASNet): the same, with
   the head and the last feature map known per family.
3. the timm contract (``forward_features`` / ``forward_head(pre_logits=True)`` /
   ``get_classifier``), which timm models and the kit architectures of this package follow.
4. any other module: the ``nn.Linear`` whose output ``forward`` returns unchanged, found by a
   probe forward pass with hooks and checked numerically (``shapeood.models.heads``); when
   several layers could be the head, the error lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shapeood.head import LinearHead
from shapeood.models.config import complete_cfg
from shapeood.models.heads import find_head

MapPost = Callable[[torch.Tensor], torch.Tensor] | None


def _nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


class _StopForward(Exception):
    """Raised inside a hook to stop the forward pass once the wanted tensor is caught."""


def _torchvision_families() -> list[tuple[type, str, str | None, MapPost]]:
    """(class, head container, last-feature-map module, post-processing of that map)."""
    from torchvision import models as tvm

    return [
        (tvm.ResNet, "fc", "layer4", None),
        (tvm.DenseNet, "classifier", "features", F.relu),
        (tvm.MobileNetV2, "classifier", "features", None),
        (tvm.MobileNetV3, "classifier", "features", None),
        (tvm.EfficientNet, "classifier", "features", None),
        (tvm.ConvNeXt, "classifier", "features", None),
        (tvm.RegNet, "fc", "trunk_output", None),
        (tvm.VGG, "classifier", "features", None),
        (tvm.VisionTransformer, "heads", None, None),
        (tvm.SwinTransformer, "head", "norm", _nhwc_to_nchw),
        (tvm.ShuffleNetV2, "fc", "conv5", None),
        (tvm.GoogLeNet, "fc", "inception5b", None),
        (tvm.Inception3, "fc", "Mixed_7c", None),
        (tvm.MNASNet, "classifier", "layers", None),
    ]


def _torchvision_family(model: nn.Module) -> tuple[type, str, str | None, MapPost] | None:
    """The entry of :func:`_torchvision_families` ``model`` is an instance of, if any.

    Only a class defined in torchvision (or derived from one) can match, so torchvision is not
    imported for other models.
    """
    if not any(c.__module__.startswith("torchvision.") for c in type(model).__mro__):
        return None
    return next((spec for spec in _torchvision_families() if isinstance(model, spec[0])), None)


def _is_head_layer(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1


def _last_head_layer(container: nn.Module) -> nn.Module | None:
    """The container itself if it is a Linear, else the last Linear inside it."""
    if _is_head_layer(container):
        return container
    found = [m for m in container.modules() if isinstance(m, nn.Linear)]
    return found[-1] if found else None


def _module_name(model: nn.Module, module: nn.Module) -> str | None:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    return None


def _resolve_module(model: nn.Module, ref: str | nn.Module, what: str) -> tuple[str, nn.Module]:
    if isinstance(ref, nn.Module):
        name = _module_name(model, ref)
        if name is None:
            raise ValueError(f"the {what} module given is not part of {type(model).__name__}")
        return name, ref
    try:
        return ref, model.get_submodule(ref)
    except AttributeError as err:
        raise ValueError(
            f"{type(model).__name__} has no module {ref!r} to use as {what}; "
            f"linear layers: {_linear_names(model)}"
        ) from err


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _as_features(h: torch.Tensor) -> torch.Tensor:
    """(N, D) from (N, D) or (N, D, 1, 1)."""
    if h.ndim == 4 and h.shape[2:] == (1, 1):
        return h.flatten(1)
    if h.ndim != 2:
        raise ValueError(
            f"the head's input has shape {tuple(h.shape)}, not (N, D): name the final linear "
            "layer that maps pooled features to logits"
        )
    return h


class FeatureModel(nn.Module):
    """A classifier split into ``features(x)`` (N, D) and ``head`` (``LinearHead``).

    ``forward(x)`` is the wrapped model's output (logits); ``features_and_logits(x)`` gives both in
    one pass; ``feature_map(x)`` the last unpooled map (N, C, H, W) where the architecture has
    one. ``layer_name`` names the split layer; ``pretrained_cfg`` describes the preprocessing.
    """

    def __init__(
        self,
        model: nn.Module,
        head_layer: nn.Module,
        layer_name: str,
        pretrained_cfg: Mapping[str, Any],
        *,
        use_contract: bool = False,
        map_layer: nn.Module | None = None,
        map_post: MapPost = None,
        map_name: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.layer_name = layer_name
        self.pretrained_cfg = dict(pretrained_cfg)
        self.use_contract = use_contract
        self.map_name = map_name
        # Kept outside the module tree: they are parts of ``model`` already.
        object.__setattr__(self, "_head_layer", head_layer)
        object.__setattr__(self, "_map_layer", map_layer)
        object.__setattr__(self, "_map_post", map_post)
        self._checked = False

    @property
    def head(self) -> LinearHead:
        """The final linear layer as data (a fresh copy of its current parameters)."""
        layer = self._head_layer
        if isinstance(layer, nn.Conv2d):
            bias = None if layer.bias is None else layer.bias.detach()
            return LinearHead(layer.weight.detach().flatten(1), bias)
        return LinearHead.from_linear(layer)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def num_features(self) -> int:
        return self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features ``h`` (N, D): the input of the final linear layer."""
        return self.features_and_logits(x)[0]

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, logits)`` from one forward pass, ``logits == head(h) == model(x)``."""
        if self.use_contract:
            if not self._checked and not self.model.training:
                self._check_contract(x[:2])
            h = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            return _as_features(h), _as_features(self._head_layer(h))
        caught: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []

        def catch_input(_module: nn.Module, args: tuple) -> None:
            caught.append(args[0])

        def catch_output(_module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
            outputs.append(out)

        pre = self._head_layer.register_forward_pre_hook(catch_input)
        post = self._head_layer.register_forward_hook(catch_output)
        try:
            out = self.model(x)
        finally:
            pre.remove()
            post.remove()
        if len(caught) != 1:
            raise ValueError(
                f"layer {self.layer_name!r} ran {len(caught)} times in one forward pass; name the "
                "final linear layer that maps pooled features to logits"
            )
        if not self._checked:
            if not torch.is_tensor(out) or not (out is outputs[0] or torch.equal(out, outputs[0])):
                raise ValueError(
                    f"the output of {type(self.model).__name__} is not the output of layer "
                    f"{self.layer_name!r}: name the final linear layer (head=...) whose output "
                    "the model returns unchanged"
                )
            self._checked = True
        return _as_features(caught[0]), _as_features(out)

    @torch.no_grad()
    def _check_contract(self, x: torch.Tensor) -> None:
        """Once, in eval mode: ``classifier(forward_head(forward_features(x), pre_logits=True))``
        must be the model's output (same small batch, so the same kernels run)."""
        h = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        logits = _as_features(self._head_layer(h)).float()
        reference = self.model(x)
        tolerance = 1e-3 * max(1.0, float(logits.abs().max()))
        if (
            not torch.is_tensor(reference)
            or reference.shape != logits.shape
            or not torch.allclose(reference.float(), logits, rtol=1e-3, atol=tolerance)
        ):
            raise ValueError(
                f"{type(self.model).__name__}: get_classifier()(forward_head(pre_logits=True)) "
                "differs from the model's output; pass head='NAME' to name the final linear layer"
            )
        self._checked = True

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last unpooled feature map (N, C, H, W) before the head's pooling."""
        if self.use_contract:
            fmap = self.model.forward_features(x)
            if getattr(self.model, "output_fmt", "NCHW") == "NHWC" and fmap.ndim == 4:
                fmap = _nhwc_to_nchw(fmap)
            if fmap.ndim != 4:
                raise ValueError(
                    f"{type(self.model).__name__} has no spatial feature map (forward_features "
                    f"gives shape {tuple(fmap.shape)}); use features(x)"
                )
            return fmap
        if self._map_layer is None:
            raise ValueError(
                f"no feature map layer is known for {type(self.model).__name__}; pass "
                "adapt(model, head=..., map_layer='name') to name the module that outputs it"
            )
        caught: list[torch.Tensor] = []

        def catch(_module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
            caught.append(out)
            raise _StopForward

        handle = self._map_layer.register_forward_hook(catch)
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not caught:
            raise ValueError(f"module {self.map_name!r} did not run in the forward pass")
        fmap = caught[0]
        return self._map_post(fmap) if self._map_post is not None else fmap

    def extra_repr(self) -> str:
        return (
            f"layer_name={self.layer_name!r}, num_features={self.num_features}, "
            f"num_classes={self.num_classes}, map={self.map_name!r}"
        )


def _cfg_for(model: nn.Module, head_layer: nn.Module, cfg: Mapping[str, Any] | None) -> dict:
    num_classes = getattr(head_layer, "out_features", None) or getattr(
        head_layer, "out_channels", None
    )
    base = cfg if cfg is not None else getattr(model, "pretrained_cfg", None)
    return complete_cfg(base, num_classes)


def adapt(
    model: nn.Module,
    head: str | nn.Module | None = None,
    *,
    map_layer: str | nn.Module | None = None,
    pretrained_cfg: Mapping[str, Any] | None = None,
) -> FeatureModel:
    """Wrap ``model`` as a ``FeatureModel``.

    ``head`` names the final linear layer (dotted name or module) for models this function does
    not know; ``map_layer`` optionally names the module whose output is the last feature map;
    ``pretrained_cfg`` overrides ``model.pretrained_cfg`` (ImageNet defaults when neither).
    """
    if isinstance(model, FeatureModel):
        if head is None and map_layer is None:
            return model
        model = model.model
    if not isinstance(model, nn.Module):
        raise ValueError(f"adapt expects a torch nn.Module, got {type(model).__name__}")

    family = _torchvision_family(model)
    map_post: MapPost = None
    map_name: str | None = None
    if head is None and family is None and _has_timm_contract(model):
        classifier = model.get_classifier()
        if not isinstance(classifier, nn.Module) or not _is_head_layer(classifier):
            raise ValueError(
                f"{type(model).__name__}.get_classifier() is {type(classifier).__name__}, not a "
                "linear layer (was it built with num_classes=0?); pass head='name'"
            )
        name = _module_name(model, classifier) or "classifier"
        cfg = _cfg_for(model, classifier, pretrained_cfg)
        return FeatureModel(
            model, classifier, name, cfg, use_contract=True, map_name="forward_features"
        )

    if head is not None:
        head_name, container = _resolve_module(model, head, "head")
        if family is not None and map_layer is None:
            map_layer, map_post = family[2], family[3]
    elif family is not None:
        head_name, container = _resolve_module(model, family[1], "head")
        map_layer, map_post = family[2], family[3]
    else:
        # Any other nn.Module: the nn.Linear whose output forward returns, found by a probe
        # forward with hooks and checked numerically (shapeood.models.heads).
        head_name, container = find_head(model)
    head_layer = _last_head_layer(container)
    if head_layer is None:
        raise ValueError(
            f"module {head_name!r} of {type(model).__name__} is not (and holds no) nn.Linear; "
            f"name the final linear layer (linear layers: {_linear_names(model)[-5:]})"
        )
    if head_layer is not container:
        head_name = f"{head_name}.{_module_name(container, head_layer)}"
    map_module = None
    if map_layer is not None:
        map_name, map_module = _resolve_module(model, map_layer, "map_layer")
    cfg = _cfg_for(model, head_layer, pretrained_cfg)
    return FeatureModel(
        model,
        head_layer,
        head_name,
        cfg,
        map_layer=map_module,
        map_post=map_post,
        map_name=map_name,
    )


def _has_timm_contract(model: nn.Module) -> bool:
    return all(
        callable(getattr(model, attr, None))
        for attr in ("forward_features", "forward_head", "get_classifier")
    )
