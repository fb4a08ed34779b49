"""Tiny models for the tests: residual, depthwise, concat and squeeze-excitation."""

from __future__ import annotations

import torch
from torch import nn

from ttmpd.profiler import UnitConfig

#: One configuration of every unit kind (and fused variants), for unit-level tests.
UNITS = [
    UnitConfig("conv", 2, 8, 16, 10, 10, 5, 5, 3, 3, 2, 2, 1, 1, bias=True),
    UnitConfig("conv", 1, 8, 8, 6, 6, 6, 6, 3, 3, 1, 1, 1, 1, groups=8, bn=True, act="relu6"),
    UnitConfig("conv", 1, 4, 8, 6, 6, 6, 6, 1, 1, bn=True, act="relu", n_inputs=2),
    UnitConfig("linear", 3, 12, 5, bias=True),
    UnitConfig("bn", 1, 6, 6, 4, 4, 4, 4),
    UnitConfig("act", 1, 6, 6, 4, 4, 4, 4, act="hardswish"),
    UnitConfig("maxpool", 1, 4, 4, 8, 8, 4, 4, 3, 3, 2, 2, 1, 1),
    UnitConfig("avgpool", 1, 4, 4, 8, 8, 4, 4, 2, 2, 2, 2),
    UnitConfig("gap", 1, 4, 4, 8, 8, 1, 1),
    UnitConfig("add", 1, 4, 4, 5, 5, 5, 5, n_inputs=2),
    UnitConfig("mul", 1, 4, 4, 5, 5, 5, 5, n_inputs=2, broadcast=True),
    UnitConfig("cat", 1, 7, 7, 5, 5, 5, 5, n_inputs=3),
    UnitConfig("softmax", 2, 10, 10),
]


class ResidualNet(nn.Module):
    """conv-bn-relu stem, one basic residual block, global pool, classifier."""

    def __init__(self, c: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu(out + x)
        return self.fc(torch.flatten(self.pool(out), 1))


class DepthwiseNet(nn.Module):
    """An inverted-residual style block with a depthwise conv and ReLU6."""

    def __init__(self, c: int = 8, expand: int = 4) -> None:
        super().__init__()
        h = c * expand
        self.stem = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6())
        self.dw = nn.Sequential(
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6()
        )
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))
        self.head = nn.Linear(c, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.project(self.dw(self.expand(x)))
        return self.head(x.mean((2, 3)))


class ConcatNet(nn.Module):
    """Two branches concatenated on channels (inception style), then max pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(12 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        return self.fc(torch.flatten(self.pool(y), 1))


class SENet(nn.Module):
    """A conv followed by squeeze-excitation: global pool, two 1x1 convs, sigmoid, multiply."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.fc1 = nn.Conv2d(c, c // 4, 1)
        self.fc2 = nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * w


def head_candidates(result) -> list:
    """The log rows of a ``ttmpd`` search's score phase that remove attention heads (the
    log writes each state as ``"group=k,..."``, removed units per group)."""
    scored = result.log[result.log["phase"] == "score"]
    groups = scored["state"].map(lambda s: [p.split("=")[0] for p in s.split(",") if p])
    return [row for (_, row), g in zip(scored.iterrows(), groups, strict=True)
            if any(name.endswith("#heads") for name in g)]  # fmt: skip
