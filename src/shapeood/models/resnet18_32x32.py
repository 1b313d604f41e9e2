"""ResNet-18 for 32x32 inputs in OpenOOD v1.5's state-dict layout (``ResNet18_32x32``).

``conv1`` 3x3 stride 1 (3 -> 64) + ``bn1`` + ReLU (no max-pool), ``layer1..4`` of two BasicBlocks
(64, 128, 256, 512 channels; stride 2 from layer2 on; projection ``shortcut.0`` conv1x1 +
``shortcut.1`` BN where the shape changes), ``avgpool`` (global), ``fc`` 512 -> C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shapeood.models.cifar_resnet import BasicBlock


class ResNet18_32x32(nn.Module):
    """OpenOOD's CIFAR ResNet-18; ``forward_features`` gives (N, 512, 4, 4) at 32x32."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_features = 512
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._stage(64, 64, stride=1)
        self.layer2 = self._stage(64, 128, stride=2)
        self.layer3 = self._stage(128, 256, stride=2)
        self.layer4 = self._stage(256, 512, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(in_planes, planes, stride, shortcut="projection"),
            BasicBlock(planes, planes, 1, shortcut="projection"),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(out))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        h = torch.flatten(self.avgpool(x), 1)
        return h if pre_logits else self.fc(h)

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
