"""ISH (Intermediate tensor SHaping): shape only what a layer saves for its weight gradient.

Forward and input gradient are those of the plain layer. Only the weight gradient changes:
``dL/dW = (dL/dy)^T h~`` with, per sample (``D`` values of the layer input ``h``),

    k  = floor(D * (1 - percentile / 100))    K = indices of the k largest |h_i|
    h~ = |h_i| * exp(sum_i h_i / sum_{i in K} |h_i|)   on K, 0 elsewhere

(``shapeood.shaping.ish_shape``). The bias gradient ``sum_batch dL/dy`` is unchanged. In eval
mode, or when the weight needs no gradient, the layers are plain ``nn.Linear`` / ``nn.Conv2d``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from shapeood import shaping

DEFAULT_PERCENTILE = 85.0  # percent, like every percentile of the project

ish_kept = shaping.ish_kept


def _shape_rows(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """``ish_shape`` per sample over all non-batch dims (rows of ``(N, -1)``), no autograd.

    Half precision is shaped in float32 (the sums) and kept in float32 for the weight gradient.
    """
    flat = x.detach().reshape(x.shape[0], -1)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    return shaping.ish_shape(flat, percentile=percentile).reshape(x.shape)


def _grad_dtype(grad: torch.Tensor, param: torch.Tensor) -> torch.dtype:
    return torch.promote_types(grad.dtype, param.dtype)


class _ISHLinearFunction(torch.autograd.Function):
    """``y = x W^T + b``; backward: plain ``dL/dx``, ``dL/db``; ``dL/dW = g^T ish_shape(x)``."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        percentile: float,
    ) -> torch.Tensor:
        out = F.linear(x, weight, bias)
        rows = x.reshape(-1, x.shape[-1])
        shaped = _shape_rows(rows, percentile) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(weight, shaped)
        ctx.input_shape = x.shape
        ctx.input_dtype = x.dtype
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, shaped = ctx.saved_tensors
        grad_rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out.matmul(weight.to(grad_out.dtype)).to(ctx.input_dtype)
            grad_x = grad_x.reshape(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            dtype = _grad_dtype(grad_rows, weight)
            grad_w = grad_rows.t().to(dtype).mm(shaped.to(dtype)).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_rows.sum(0)
        return grad_x, grad_w, grad_b, None


class _ISHConv2dFunction(torch.autograd.Function):
    """Conv2d with the weight gradient taken against ``ish_shape`` of each sample's C*H*W input."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        percentile: float,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
    ) -> torch.Tensor:
        out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(weight, _shape_rows(x, percentile))
        ctx.conv = (stride, padding, dilation, groups)
        ctx.input_dtype = x.dtype
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, shaped = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        dtype = _grad_dtype(grad_out, weight)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        # The input gradient depends on the input's shape only, so the shaped tensor serves both.
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out.to(dtype),
            shaped.to(dtype),
            weight.to(dtype),
            [weight.shape[0]] if ctx.has_bias else None,
            list(stride),
            list(padding),
            list(dilation),
            False,
            [0, 0],
            groups,
            [need_x, need_w, need_b],
        )
        if grad_x is not None:
            grad_x = grad_x.to(ctx.input_dtype)
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        return grad_x, grad_w, grad_b if need_b else None, None, None, None, None, None


def _use_ish(module: nn.Module) -> bool:
    return module.training and torch.is_grad_enabled() and module.weight.requires_grad


class ISHLinear(nn.Linear):
    """Drop-in ``nn.Linear`` (same parameters and state-dict keys) trained with ISH.

    Forward and ``dL/dx`` are unchanged; ``dL/dW = (dL/dy)^T ish_shape(x, percentile)``.
    Inputs with extra leading dims (``(..., D)``) are shaped row by row. Eval mode is plain.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        percentile: float = DEFAULT_PERCENTILE,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.percentile = shaping.check_ish_percentile(percentile)
        if ish_kept(in_features, self.percentile) < 1:
            raise ValueError(
                f"ISH with percentile={percentile} keeps floor({in_features} * (1 - "
                f"{percentile}/100)) = 0 of {in_features} inputs: lower the percentile"
            )

    @classmethod
    def from_linear(cls, layer: nn.Linear, percentile: float = DEFAULT_PERCENTILE) -> ISHLinear:
        """An ``ISHLinear`` that shares ``layer``'s parameter objects (no copy)."""
        new = cls(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            percentile=percentile,
            device="meta",
        )
        _share_parameters(layer, new)
        return new

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` sharing this layer's parameter objects."""
        new = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device="meta"
        )
        _share_parameters(self, new)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _use_ish(self):
            return F.linear(x, self.weight, self.bias)
        return _ISHLinearFunction.apply(x, self.weight, self.bias, self.percentile)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, percentile={self.percentile}"


def _resolve_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if not isinstance(conv.padding, str):
        return tuple(int(p) for p in conv.padding)  # type: ignore[return-value]
    if conv.padding == "valid":
        return (0, 0)
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
    if any(t % 2 for t in totals):
        raise ValueError(
            "ISHConv2d supports padding='same' only when it is symmetric (odd effective kernel "
            f"size); got kernel {conv.kernel_size} with dilation {conv.dilation}"
        )
    return (totals[0] // 2, totals[1] // 2)


def ish_conv_supported(conv: nn.Conv2d) -> bool:
    """Whether ``ISHConv2d`` can stand in for ``conv`` (zero padding, symmetric ``'same'``)."""
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros":
        return False
    try:
        _resolve_padding(conv)
    except ValueError:
        return False
    return True


class ISHConv2d(nn.Conv2d):
    """Drop-in ``nn.Conv2d`` (zero padding) whose weight gradient sees ``ish_shape`` of the input.

    Each sample's input map is shaped as one vector of ``C*H*W`` values.
    """

    def __init__(self, *args: Any, percentile: float = DEFAULT_PERCENTILE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(
                f"ISHConv2d supports padding_mode='zeros' only, got {self.padding_mode!r}"
            )
        self.percentile = shaping.check_ish_percentile(percentile)
        self._explicit_padding = _resolve_padding(self)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, percentile: float = DEFAULT_PERCENTILE) -> ISHConv2d:
        """An ``ISHConv2d`` that shares ``conv``'s parameter objects (no copy)."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            percentile=percentile,
            device="meta",
        )
        _share_parameters(conv, new)
        return new

    def to_conv(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` sharing this layer's parameter objects."""
        new = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
            device="meta",
        )
        _share_parameters(self, new)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _use_ish(self) or x.ndim != 4:
            return super().forward(x)
        return _ISHConv2dFunction.apply(
            x,
            self.weight,
            self.bias,
            self.percentile,
            self.stride,
            self._explicit_padding,
            self.dilation,
            self.groups,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, percentile={self.percentile}"


def _share_parameters(source: nn.Module, target: nn.Module) -> None:
    target.weight = source.weight
    target.bias = source.bias
    target.train(source.training)


# ---------------------------------------------------------------- model-level conversion


def head_layer_name(model: nn.Module, head: str | None = None) -> str:
    """Dotted name of the classifier's final layer, as ``shapeood.models.adapt`` splits it.

    ``head`` names the classifier module for models ``adapt`` does not know (the final
    ``nn.Linear`` inside it is taken).
    """
    from shapeood import models  # train sits above models

    if head is not None:
        root = getattr(model, "model", model) if hasattr(model, "layer_name") else model
        return _final_layer_under(root, head)
    feature_model = models.adapt(model)
    return _final_layer_under(feature_model.model, str(feature_model.layer_name))


def _final_layer_under(model: nn.Module, name: str) -> str:
    try:
        module = model.get_submodule(name)
    except AttributeError as err:
        raise ValueError(f"the model has no layer named {name!r}") from err
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return name
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"layer {name!r} ({type(module).__name__}) holds no nn.Linear: ISH needs a linear head"
        )
    return f"{name}.{linears[-1]}" if name else linears[-1]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _to_ish(module: nn.Module, percentile: float) -> nn.Module | None:
    if isinstance(module, (ISHLinear, ISHConv2d)):
        module.percentile = percentile
        return None
    if type(module) is nn.Linear:
        return ISHLinear.from_linear(module, percentile)
    if isinstance(module, nn.Conv2d) and ish_conv_supported(module):
        return ISHConv2d.from_conv(module, percentile)
    return None


def apply_ish(
    model: nn.Module,
    percentile: float = DEFAULT_PERCENTILE,
    layers: str | Iterable[str] = "head",
    head: str | None = None,
) -> nn.Module:
    """Convert layers of ``model`` in place to their ISH variant and return ``model``.

    ``layers``: ``"head"`` (the final ``nn.Linear``, found through ``shapeood.models.adapt`` or
    inside the module named by ``head``; the published recipe), ``"all"`` (every ``nn.Linear``
    and every zero-padded ``nn.Conv2d``; other modules are left alone) or dotted module names.
    Parameters are shared, not copied, so an optimiser built before the call keeps working.
    """
    percentile = shaping.check_ish_percentile(percentile)
    target = getattr(model, "model", model) if hasattr(model, "layer_name") else model
    if isinstance(target, (nn.Linear, nn.Conv2d)):
        raise ValueError(
            f"apply_ish converts layers inside a model; wrap the bare {type(target).__name__} "
            "(e.g. nn.Sequential(layer)) or build ISHLinear/ISHConv2d directly"
        )
    if isinstance(layers, str) and layers == "all":
        names = [
            n for n, m in target.named_modules() if n and isinstance(m, (nn.Linear, nn.Conv2d))
        ]
    elif isinstance(layers, str) and layers == "head":
        names = [head_layer_name(model, head)]
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise ValueError("layers is empty: pass 'head', 'all' or module names")
    for name in names:
        try:
            module = target.get_submodule(name)
        except AttributeError as err:
            raise ValueError(
                f"the model has no layer named {name!r}; use 'head', 'all' or a dotted name "
                "from model.named_modules()"
            ) from err
        new = _to_ish(module, percentile)
        explicit = not (isinstance(layers, str) and layers == "all")
        if new is None and explicit and not isinstance(module, (ISHLinear, ISHConv2d)):
            raise ValueError(
                f"layer {name!r} is a {type(module).__name__}; ISH converts nn.Linear and "
                "zero-padded nn.Conv2d only"
            )
        if new is not None:
            _replace(target, name, new)
    return model


def remove_ish(model: nn.Module) -> nn.Module:
    """Turn every ISH layer of ``model`` back into a plain layer (parameters shared); return it."""
    target = getattr(model, "model", model) if hasattr(model, "layer_name") else model
    found = [(n, m) for n, m in target.named_modules() if isinstance(m, (ISHLinear, ISHConv2d))]
    for name, module in found:
        plain = module.to_linear() if isinstance(module, ISHLinear) else module.to_conv()
        if name:
            _replace(target, name, plain)
    return model


def ish_layers(model: nn.Module) -> list[str]:
    """Names of the ISH layers in ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, (ISHLinear, ISHConv2d))]
