"""Small synthetic data and a tiny trained checkpoint shared by the base-model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ttmpd.base import TrainConfig, train_base
from ttmpd.data import ImageDataset

TINY = TrainConfig(model="resnet20", epochs=1, batch_size=64, seed=0, threads=1)


def synthetic_digits(n: int = 256, side: int = 16, channels: int = 1, seed: int = 0):
    """Class k is a bright square at one of 4 positions plus noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = rng.integers(0, 60, size=(n, side, side, channels)).astype(np.uint8)
    half = side // 2
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[i, r * half : r * half + half - 2, c * half : c * half + half - 2] = 230
    return ImageDataset(images, labels, name="synthetic", classes=("a", "b", "c", "d"))


@pytest.fixture(scope="session")
def source() -> ImageDataset:
    return synthetic_digits(256, seed=0)


@pytest.fixture(scope="session")
def test_data() -> ImageDataset:
    return synthetic_digits(128, seed=1)


@pytest.fixture(scope="session")
def tiny() -> TrainConfig:
    """:data:`TINY` for test modules (``from conftest import`` would pick whichever
    ``conftest`` module another test folder loaded first)."""
    return TINY


@pytest.fixture(scope="session")
def trained(source, test_data):
    return train_base(TINY, source, test=test_data)


@pytest.fixture(scope="session")
def checkpoint_path(trained, tmp_path_factory) -> Path:
    return trained.save(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
