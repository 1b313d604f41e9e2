"""TensorFlow's MobileNetV2 1.0 (ImageNet), run layer by layer from its graph description.

The graph is a list of layers in execution order, as in the kit's ``graph_json``: ``CONV_2D`` /
``DEPTHWISE_CONV_2D`` (``kernel``, ``stride``, ``out_channels``, ``relu6``), ``ADD`` (two
inputs), ``AVERAGE_POOL_2D`` (global), ``RESHAPE``, ``SOFTMAX``. Each convolution is the module
``lNN`` (NN = layer id), with TensorFlow "SAME" padding (asymmetric for stride 2 on even sizes)
and BatchNorm already folded into its weight and bias.

The TensorFlow classifier has 1001 outputs, index 0 being "background". Here it is the linear
layer ``classifier`` 1280 -> 1000 without that row, so class k of the usual sorted-wnid ImageNet
order is output k (``num_classes=1001`` keeps the background row as output 0). The model returns
logits; the graph's final SOFTMAX is not applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2 1.0.
INVERTED_RESIDUAL_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
GRAPH_FIELDS = ("op", "inputs", "kernel", "stride", "out_channels", "relu6")


def default_graph() -> list[dict[str, Any]]:
    """The layer list of MobileNetV2 1.0 224 in TensorFlow's execution order (66 layers)."""
    graph: list[dict[str, Any]] = []

    def add(op: str, inputs: list, **fields: Any) -> int:
        graph.append({"id": len(graph), "op": op, "inputs": inputs, **fields})
        return len(graph) - 1

    def conv(op: str, src: Any, kernel: int, stride: int, channels: int, relu6: bool) -> int:
        fields = {"kernel": kernel, "stride": stride, "out_channels": channels, "relu6": relu6}
        return add(op, [src], **fields)

    last = conv("CONV_2D", "input", 3, 2, 32, True)
    channels = 32
    for t, c, n, s in INVERTED_RESIDUAL_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            block_in = last
            hidden = channels * t
            if t != 1:
                last = conv("CONV_2D", last, 1, 1, hidden, True)
            last = conv("DEPTHWISE_CONV_2D", last, 3, stride, hidden, True)
            last = conv("CONV_2D", last, 1, 1, c, False)
            if stride == 1 and channels == c:
                last = add("ADD", [last, block_in])
            channels = c
    last = conv("CONV_2D", last, 1, 1, 1280, True)
    last = add("AVERAGE_POOL_2D", [last])
    last = conv("CONV_2D", last, 1, 1, 1001, False)
    last = add("RESHAPE", [last])
    add("SOFTMAX", [last])
    return graph


def same_graph(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    """Whether two layer lists describe the same network (ignoring notes and padding labels)."""
    if len(a) != len(b):
        return False
    return all(all(x.get(f) == y.get(f) for f in GRAPH_FIELDS) for x, y in zip(a, b, strict=True))


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding: total ``max((ceil(n/s)-1)*s + k - n, 0)``,
    half (rounded down) before, the rest after. With stride 1 and an odd kernel that is the
    symmetric padding ``k // 2``, done by the convolution itself."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2 if symmetric else 0,
            groups=groups,
        )
        self.symmetric = symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:
            return super().forward(x)
        pads = []
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return super().forward(x)


class MobileNetV2TF(nn.Module):
    """MobileNetV2 1.0 with TF padding; ``forward_features`` gives (N, 1280, 7, 7) at 224x224."""

    def __init__(self, num_classes: int = 1000, graph: Sequence[Mapping[str, Any]] | None = None):
        super().__init__()
        if num_classes not in (1000, 1001):
            raise ValueError(
                f"mobilenet_v2_tf has 1000 ImageNet classes (1001 with background), got "
                f"num_classes={num_classes}; replace model.classifier to fine-tune on other classes"
            )
        self.graph = [dict(layer) for layer in (graph or default_graph())]
        channels: dict[Any, int] = {"input": 3}
        self.pool_id = self.logits_id = -1
        for layer in self.graph:
            lid, op = layer["id"], layer["op"]
            src = layer["inputs"][0]
            if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                in_ch, out_ch = channels[src], int(layer["out_channels"])
                if src == self.pool_id:  # the 1x1 conv after pooling is the classifier
                    self.logits_id = lid
                    self.classifier = nn.Linear(in_ch, num_classes)
                    self.num_features = in_ch
                else:
                    groups = in_ch if op == "DEPTHWISE_CONV_2D" else 1
                    conv = Conv2dSame(
                        in_ch, out_ch, int(layer["kernel"]), int(layer["stride"]), groups=groups
                    )
                    self.add_module(f"l{lid:02d}", conv)
                channels[lid] = out_ch
            elif op == "AVERAGE_POOL_2D":
                self.pool_id = lid
                channels[lid] = channels[src]
            else:
                channels[lid] = channels[src]
        if self.logits_id < 0:
            raise ValueError("graph has no AVERAGE_POOL_2D followed by a 1x1 CONV_2D classifier")
        self.num_classes = num_classes
        # After which layer each intermediate output can be released.
        last_use: dict[Any, int] = {}
        for layer in self.graph:
            for src in layer["inputs"]:
                last_use[src] = layer["id"]
        self._release_after: dict[int, list[Any]] = {}
        for src, lid in last_use.items():
            self._release_after.setdefault(lid, []).append(src)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph up to the global pooling: the last feature map (after relu6)."""
        outputs: dict[Any, torch.Tensor] = {"input": x}
        for layer in self.graph:
            lid, op = layer["id"], layer["op"]
            if op == "AVERAGE_POOL_2D":
                return outputs[layer["inputs"][0]]
            if op == "ADD":
                a, b = layer["inputs"]
                outputs[lid] = outputs[a] + outputs[b]
            elif op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                out = getattr(self, f"l{lid:02d}")(outputs[layer["inputs"][0]])
                outputs[lid] = out.clamp_(0.0, 6.0) if layer.get("relu6") else out
            for src in self._release_after.get(lid, ()):
                del outputs[src]
        raise RuntimeError("graph ended before AVERAGE_POOL_2D")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, then ``classifier``."""
        h = x.mean(dim=(2, 3))
        return h if pre_logits else self.classifier(h)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def convert_kit_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map the kit's ``lNN.weight/bias`` (logits conv included) onto this module's names."""
        out = {k: v for k, v in state.items() if not k.startswith(f"l{self.logits_id:02d}.")}
        key = f"l{self.logits_id:02d}"
        if f"{key}.weight" in state:
            weight = state[f"{key}.weight"].reshape(state[f"{key}.weight"].shape[0], -1)
            bias = state[f"{key}.bias"]
            drop = weight.shape[0] - self.num_classes
            if drop not in (0, 1):
                raise ValueError(
                    f"classifier {key} has {weight.shape[0]} outputs, cannot give "
                    f"{self.num_classes} classes"
                )
            out["classifier.weight"] = weight[drop:]
            out["classifier.bias"] = bias[drop:]
        return out
