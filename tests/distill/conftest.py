"""Fixtures for the distillation tests: tiny stage nets (teacher and a narrower student),
uint8 image streams whose pixels encode the sample id, a counting teacher wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


class StageNet(nn.Module):
    """stem -> layer1 (same size) -> layer2 (stride 2) -> pool -> fc; like a tiny ResNet."""

    def __init__(self, widths: tuple[int, int] = (8, 16), classes: int = 4) -> None:
        super().__init__()
        a, b = widths
        self.stem = nn.Sequential(nn.Conv2d(1, a, 3, padding=1), nn.BatchNorm2d(a), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(a, a, 3, padding=1), nn.BatchNorm2d(a), nn.ReLU())
        self.layer2 = nn.Sequential(
            nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(b, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class Counting(nn.Module):
    """Wraps a model; records the ids (decoded from pixels 0 and 1) of every sample seen."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = (x[:, 0, 0, :2] * 255).round().long()
        self.seen.extend((raw[:, 0] + 256 * raw[:, 1]).tolist())
        return self.model(x)


def stream(n: int, hw: int = 12, seed: int = 0) -> np.ndarray:
    """``uint8 (n, hw, hw, 1)`` random images; pixel (0,0) + 256 * pixel (0,1) = the id."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, hw, hw, 1), dtype=np.uint8)
    ids = np.arange(n)
    images[:, 0, 0, 0] = ids % 256
    images[:, 0, 1, 0] = ids // 256
    return images


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] (no normalisation, so ids stay decodable)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous()


@pytest.fixture
def make_net():
    def make(widths=(8, 16), classes=4, seed=0) -> StageNet:
        torch.manual_seed(seed)
        return StageNet(widths, classes).eval()

    return make


@pytest.fixture
def counting():
    return Counting


@pytest.fixture
def make_stream():
    return stream


@pytest.fixture
def images():
    return stream(96)


@pytest.fixture
def to_model_input():
    return to_input
