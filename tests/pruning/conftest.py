"""Fixtures for the pruning tests (the one-thread pin lives in tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def x16() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def x32() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
