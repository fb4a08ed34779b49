"""VGG-11 with BatchNorm (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015, configuration A; BN after each conv as in
torchvision's ``vgg11_bn``).

Layout (torchvision's parameter names)::

    features: conv3x3-BN-ReLU with widths 64 M 128 M 256 256 M 512 512 M 512 512 M
              (M = 2x2/2 max pool)
    -> avgpool (adaptive, pool_size x pool_size) -> flatten
    -> classifier: linear(512*p*p, hidden) ReLU dropout, linear(hidden, hidden) ReLU
       dropout, linear(hidden, num_classes)

Design choice, so one model runs on both 32x32 and 224x224 inputs: the adaptive pool goes
to **1x1 by default** (``pool_size=1``; 32.2M params at 1000 classes instead of the paper's
132.9M, most of which sit in the first classifier layer). ``pool_size=7`` restores
the paper/torchvision classifier exactly (at 224x224 the feature map is already 7x7; on
smaller inputs the pool repeats values, which runs but wastes work). Max pools use
``ceil_mode=True``: identical to the usual floor mode on sides that are multiples of 32
(32, 224) and it lets odd sizes such as 28x28 run instead of shrinking to zero.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ._init import init_weights
from ._zoo import MODELS

_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def make_features(config: tuple[int | str, ...], in_channels: int) -> nn.Sequential:
    """Conv3x3-BN-ReLU for each width in ``config``, a 2x2 max pool for each ``"M"``."""
    layers: list[nn.Module] = []
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            layers += [
                nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1),
                nn.BatchNorm2d(int(item)),
                nn.ReLU(),
            ]
            in_channels = int(item)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG network with BatchNorm; see the module docstring for the layout."""

    def __init__(
        self,
        config: tuple[int | str, ...],
        in_channels: int,
        num_classes: int,
        *,
        pool_size: int = 1,
        hidden_dim: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InputError(f"pool_size must be a positive integer (1 or 7), got {pool_size!r}")
        if isinstance(hidden_dim, bool) or not isinstance(hidden_dim, int) or hidden_dim < 1:
            raise InputError(f"hidden_dim must be a positive integer, got {hidden_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout!r}")
        self.features = make_features(config, in_channels)
        width = [item for item in config if item != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(int(width) * pool_size * pool_size, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@MODELS.register
def vgg11_bn(
    *,
    in_channels: int = 3,
    num_classes: int = 1000,
    pool_size: int = 1,
    hidden_dim: int = 4096,
    dropout: float = 0.5,
) -> VGG:
    """VGG-11 with BatchNorm (Simonyan & Zisserman, ICLR 2015), adaptive pool to 1x1.

    8 conv3x3-BN-ReLU layers (64-128-256x2-512x4) with 5 max pools, adaptive average pool
    to ``pool_size`` x ``pool_size`` (1 by default, 7 = the paper's 224x224 classifier),
    then 3 linear layers. Runs on 32x32 and 224x224 (and 28x28) inputs.
    """
    return VGG(
        _VGG11,
        in_channels,
        num_classes,
        pool_size=pool_size,
        hidden_dim=hidden_dim,
        dropout=dropout,
    )
