"""ImageNet ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

Layout, identical to torchvision's (same parameter names, so its state_dicts load)::

    conv1 7x7/2 (64) -> bn1 -> relu -> maxpool 3x3/2
    -> layer1 (64) -> layer2 (128, /2) -> layer3 (256, /2) -> layer4 (512, /2)
    -> avgpool (adaptive, 1x1) -> flatten -> fc

Blocks use a 1x1 conv + BN ``downsample`` shortcut when the shape changes ("option B"), and
Bottleneck puts the stride on its 3x3 conv ("ResNet v1.5"). Each ReLU is its own module and
none is in-place, so forward hooks see the tensors they hook.
"""

from __future__ import annotations

import torch
from torch import nn

from ._init import init_weights
from ._zoo import MODELS


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual add: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_planes, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu2(out)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand (x4), with a residual add."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.downsample = _downsample(in_planes, out_planes, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + identity
        return self.relu3(out)


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(
    block: Block, in_planes: int, planes: int, blocks: int, stride: int
) -> nn.Sequential:
    """``blocks`` residual blocks; the first one carries the stride and the channel change."""
    layers = [block(in_planes, planes, stride)]
    layers += [block(planes * block.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """The ImageNet ResNet trunk; see the module docstring for the layout."""

    def __init__(
        self, block: Block, layers: tuple[int, int, int, int], in_channels: int, num_classes: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        in_planes = 64
        for index, (planes, blocks, stride) in enumerate(zip(widths, layers, strides, strict=True)):
            self.add_module(
                f"layer{index + 1}", make_stage(block, in_planes, planes, blocks, stride)
            )
            in_planes = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@MODELS.register
def resnet18(*, in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ResNet-18 (He et al., CVPR 2016): BasicBlocks [2, 2, 2, 2], 11.69M params at 1000 classes.

    ImageNet layout: 7x7/2 stem, maxpool, stages of 64/128/256/512 channels, adaptive
    average pool, fc. Runs on any input of 32x32 or larger.
    """
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes)


@MODELS.register
def resnet34(*, in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ResNet-34 (He et al., CVPR 2016): BasicBlocks [3, 4, 6, 3], 21.80M params at 1000 classes.

    ImageNet layout: 7x7/2 stem, maxpool, stages of 64/128/256/512 channels, adaptive
    average pool, fc. Runs on any input of 32x32 or larger.
    """
    return ResNet(BasicBlock, (3, 4, 6, 3), in_channels, num_classes)


@MODELS.register
def resnet50(*, in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ResNet-50 (He et al., CVPR 2016): Bottlenecks [3, 4, 6, 3], 25.56M params at 1000 classes.

    ImageNet layout: 7x7/2 stem, maxpool, stages of 256/512/1024/2048 output channels
    (stride on the 3x3 conv, "v1.5"), adaptive average pool, fc. Runs on inputs >= 32x32.
    """
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, num_classes)
