"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018).

Layout, with torchvision's parameter names (its state_dicts load)::

    features.0  conv 3x3/2 (32) + BN + ReLU6
    features.1-17  inverted residuals (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2)
                   (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1)
    features.18 conv 1x1 (1280) + BN + ReLU6
    -> avgpool (adaptive, 1x1) -> flatten -> classifier (dropout, linear)

An inverted residual is 1x1 expand (x t, ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear
projection, with ``out = out + x`` when stride is 1 and the width is unchanged. The total
stride is 32, so 32x32 inputs reach a 1x1 map and still run.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ._init import init_weights
from ._zoo import MODELS

# (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor``, never going below 90% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU6, as indices 0, 1, 2."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes match."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_planes * expand_ratio)
        self.use_residual = stride == 1 and in_planes == out_planes
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_planes, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.use_residual:
            out = out + x
        return out


class MobileNetV2(nn.Module):
    """MobileNetV2; see the module docstring for the layout."""

    def __init__(
        self, in_channels: int, num_classes: int, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        if not width_mult > 0:
            raise InputError(f"width_mult must be > 0, got {width_mult!r}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout!r}")
        in_planes = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(in_channels, in_planes, stride=2)]
        for expand_ratio, channels, repeats, first_stride in _SETTINGS:
            out_planes = make_divisible(channels * width_mult)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                features.append(InvertedResidual(in_planes, out_planes, stride, expand_ratio))
                in_planes = out_planes
        features.append(ConvBNReLU6(in_planes, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes)
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@MODELS.register
def mobilenet_v2(
    *, in_channels: int = 3, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2
) -> MobileNetV2:
    """MobileNetV2 (Sandler et al., CVPR 2018): 17 inverted residuals, 3.50M params at 1.0x.

    Stem 3x3/2 (32), inverted residuals with ReLU6 and depthwise 3x3 convs, 1x1 conv to
    1280, adaptive average pool, dropout + linear. ``width_mult`` scales every width
    (rounded to multiples of 8; the last conv never shrinks below 1280). Runs on 32x32 too.
    """
    return MobileNetV2(in_channels, num_classes, width_mult=width_mult, dropout=dropout)
