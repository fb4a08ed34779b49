"""Training-time augmentation: random shifts only (the corruptions are the test-time shift)."""

from __future__ import annotations

import numpy as np


def auto_shift_px(image_hw: tuple[int, int]) -> int:
    """The default maximum shift: 2 px on a 28x28 digit, scaled with size, at least 1."""
    return max(1, round(min(image_hw) * 2 / 28))


def random_shift(images: np.ndarray, max_px: int, rng: np.random.Generator) -> np.ndarray:
    """Shift every ``uint8`` NHWC image by its own random ``(dy, dx)`` in ``[-max_px, max_px]``.

    Pixels shifted in are 0 (black background); the output has the input's shape.
    """
    if max_px <= 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (max_px, max_px), (max_px, max_px), (0, 0)))
    dy, dx = rng.integers(0, 2 * max_px + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
