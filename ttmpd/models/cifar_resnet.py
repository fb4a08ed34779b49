"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2).

Layout for depth ``6n + 2``::

    conv1 3x3 (16) -> bn1 -> relu
    -> layer1 (n blocks, 16) -> layer2 (n blocks, 32, /2) -> layer3 (n blocks, 64, /2)
    -> avgpool (adaptive, 1x1) -> flatten -> fc

The paper's CIFAR nets use zero-padding ("option A") shortcuts; ours use 1x1 conv + BN
projections ("option B") where the shape changes, so that every channel is owned by a
layer and dependency-graph channel pruning can prune the stage widths. This adds 2.8K
parameters (resnet20: 272K vs the paper's 0.27M; resnet56: 856K vs 0.85M). The adaptive pool
makes 28x28 (MNIST-sized) inputs work as well as 32x32.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ._init import init_weights
from ._zoo import MODELS
from .resnet import BasicBlock, make_stage


class CifarResNet(nn.Module):
    """A CIFAR ResNet of depth ``6n + 2``; see the module docstring for the layout."""

    def __init__(self, depth: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise InputError(f"CIFAR ResNet depth must be 6n + 2 (8, 14, 20, ...), got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = make_stage(BasicBlock, 16, 16, blocks, stride=1)
        self.layer2 = make_stage(BasicBlock, 16, 32, blocks, stride=2)
        self.layer3 = make_stage(BasicBlock, 32, 64, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@MODELS.register
def resnet20(*, in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al., CVPR 2016): 3 stages x 3 BasicBlocks, 0.27M params.

    3x3 stem (16), stages of 16/32/64 channels, 1x1 conv shortcuts, adaptive average pool,
    fc. For 32x32 and 28x28 inputs.
    """
    return CifarResNet(20, in_channels, num_classes)


@MODELS.register
def resnet56(*, in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    """ResNet-56 for CIFAR (He et al., CVPR 2016): 3 stages x 9 BasicBlocks, 0.86M params.

    3x3 stem (16), stages of 16/32/64 channels, 1x1 conv shortcuts, adaptive average pool,
    fc. For 32x32 and 28x28 inputs.
    """
    return CifarResNet(56, in_channels, num_classes)
