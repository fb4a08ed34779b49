"""Shared fixtures; the tiny models live in tests/nets.py."""

from __future__ import annotations

import pytest
import torch
from nets import ResidualNet
from torch import nn


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole suite: small tests run faster and do not spin-wait
    on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def residual_net() -> nn.Module:
    return ResidualNet().eval()


@pytest.fixture
def example_input() -> torch.Tensor:
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
