"""Small image batches shared by the data tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ttmpd.data import load_mnist


@pytest.fixture(scope="session")
def mnist32() -> np.ndarray:
    """32 MNIST test digits, uint8 (32, 28, 28, 1)."""
    return load_mnist("test").images[:32]


@pytest.fixture(scope="session")
def rgb32() -> np.ndarray:
    """32 smooth random colour images, uint8 (32, 32, 32, 3), each stretched to 0..255."""
    rng = np.random.default_rng(0)
    x = ndimage.gaussian_filter(rng.random((32, 32, 32, 3)), (0, 1.5, 1.5, 0))
    low = x.min(axis=(1, 2, 3), keepdims=True)
    x = (x - low) / np.ptp(x, axis=(1, 2, 3), keepdims=True)
    return np.rint(x * 255).astype(np.uint8)
