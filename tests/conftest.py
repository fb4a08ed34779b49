"""Shared fixtures; the tiny models live in tests/nets.py."""

from __future__ import annotations

import pytest
import torch
from nets import ResidualNet
from torch import nn


@pytest.fixture
def residual_net() -> nn.Module:
    return ResidualNet().eval()


@pytest.fixture
def example_input() -> torch.Tensor:
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
