"""DenseNet-BC for CIFAR in the state-dict layout of the DICE checkpoints (``DenseNet3``).

Pre-activation order everywhere (BN -> ReLU -> conv, convolutions without bias):
``conv1`` 3x3 (3 -> 2k), three dense blocks ``block{1,2,3}.layer.{i}`` of n bottleneck layers
(``bn1`` -> ReLU -> ``conv1`` 1x1 to 4k -> ``bn2`` -> ReLU -> ``conv2`` 3x3 to k, new channels
concatenated after the input), transitions ``trans{1,2}`` (``bn1`` -> ReLU -> ``conv1`` 1x1,
compression 0.5 -> 2x2 average pooling), final ``bn1`` -> ReLU (the last feature map), global
average pooling, ``fc``. Depth 100, k = 12 gives n = 16 and a 342-d penultimate feature.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BottleneckLayer(nn.Module):
    """``cat([x, conv2(relu(bn2(conv1(relu(bn1(x))))))])``."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        inter = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, inter, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class DenseBlock(nn.Module):
    """``layers`` bottleneck layers, each adding ``growth_rate`` channels."""

    def __init__(self, layers: int, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[BottleneckLayer(in_planes + i * growth_rate, growth_rate) for i in range(layers)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class Transition(nn.Module):
    """``avg_pool2d(conv1(relu(bn1(x))), 2)``."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(x))), 2)


class DenseNetBC(nn.Module):
    """DenseNet-BC (bottleneck, compression); ``forward_features`` gives (N, 342, 8, 8) at 32x32."""

    def __init__(
        self,
        depth: int = 100,
        num_classes: int = 10,
        growth_rate: int = 12,
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4 (40, 100, 190, ...), got {depth}")
        layers = (depth - 4) // 6
        self.depth = depth
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        self.block1 = DenseBlock(layers, planes, growth_rate)
        planes += layers * growth_rate
        self.trans1 = Transition(planes, math.floor(planes * reduction))
        planes = math.floor(planes * reduction)
        self.block2 = DenseBlock(layers, planes, growth_rate)
        planes += layers * growth_rate
        self.trans2 = Transition(planes, math.floor(planes * reduction))
        planes = math.floor(planes * reduction)
        self.block3 = DenseBlock(layers, planes, growth_rate)
        planes += layers * growth_rate
        self.bn1 = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)
        self.num_features = planes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn1(block3(...)))``: the last (non-negative) feature map."""
        out = self.trans1(self.block1(self.conv1(x)))
        out = self.trans2(self.block2(out))
        return F.relu(self.bn1(self.block3(out)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling (``avg_pool2d(x, 8)`` at 32x32), then ``fc``."""
        h = x.mean(dim=(2, 3))
        return h if pre_logits else self.fc(h)

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
