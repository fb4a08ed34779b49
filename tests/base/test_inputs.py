from __future__ import annotations

import numpy as np
import pytest
import torch

from ttmpd.base import channel_stats, check_input_channels, to_model_input
from ttmpd.base._augment import auto_shift_px, random_shift
from ttmpd.errors import InputError
from ttmpd.models import create_model


def test_to_model_input_matches_formula():
    images = np.random.default_rng(0).integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    x = to_model_input(images, (mean, std))
    expected = (images.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    assert x.dtype == torch.float32 and tuple(x.shape) == (5, 3, 6, 7)
    np.testing.assert_allclose(x.numpy(), expected.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-6)


def test_to_model_input_without_normalization_is_unit_range():
    images = np.array([[[0, 255]]], dtype=np.uint8)  # (1, 1, 2) -> C = 1
    x = to_model_input(images, None)
    assert tuple(x.shape) == (1, 1, 1, 2)
    assert x.flatten().tolist() == [0.0, 1.0]


def test_to_model_input_rejects_wrong_channel_count():
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="per channel"):
        to_model_input(images, ((0.1, 0.2), (1.0, 1.0)))


def test_channel_stats_of_known_values():
    images = np.zeros((2, 2, 2, 1), dtype=np.uint8)
    images[0] = 255  # half the pixels 1.0, half 0.0
    mean, std = channel_stats(images)
    assert mean == (0.5,) and std == (0.5,)


def test_check_input_channels_names_both_counts():
    model = create_model("resnet20", in_channels=1)
    with pytest.raises(InputError, match=r"1-channel.*3 channel"):
        check_input_channels(model, np.zeros((1, 8, 8, 3), dtype=np.uint8))


def test_random_shift_moves_content_and_keeps_shape():
    images = np.zeros((50, 12, 12, 1), dtype=np.uint8)
    images[:, 4:8, 4:8] = 200  # fully inside any 2 px shift
    shifted = random_shift(images, 2, np.random.default_rng(0))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert (shifted.reshape(50, -1).sum(1) == images.reshape(50, -1).sum(1)).all()
    assert not np.array_equal(shifted, images)
    assert random_shift(images, 0, np.random.default_rng(0)) is images
    assert auto_shift_px((28, 28)) == 2 and auto_shift_px((8, 8)) == 1
