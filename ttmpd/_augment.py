"""Random pixel shifts of uint8 NHWC images, shared by base training and the distill cache."""

from __future__ import annotations

import numpy as np


def random_shift(images: np.ndarray, max_px: int, rng: np.random.Generator) -> np.ndarray:
    """Shift every ``uint8`` NHWC image by its own random ``(dy, dx)`` in ``[-max_px, max_px]``.

    Pixels shifted in are 0 (black background); the output has the input's shape. With
    ``max_px <= 0`` or no images, ``images`` itself is returned.
    """
    if max_px <= 0 or len(images) == 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (max_px, max_px), (max_px, max_px), (0, 0)))
    dy, dx = rng.integers(0, 2 * max_px + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
