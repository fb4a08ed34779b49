"""Augmented views for the cache: random pixel shifts, drawn once and stored.

Cached teacher outputs are only valid for the exact input the teacher saw, and no
augmentation commutes with intermediate features. So augmentation never happens on the fly
when outputs are cached: the cache stores ``K`` views of every sample (view 0 is the
original; views 1..K-1 are shifted by a seeded random ``(dy, dx)``) together with the
teacher's outputs for each view, and every epoch the trainer draws one stored view per
sample. ``K = 1`` (the default) means no augmentation. Cost: ``K x subset`` teacher passes,
once.
"""

from __future__ import annotations

import numpy as np


def random_shift(images: np.ndarray, max_px: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each ``uint8`` NHWC image by its own ``(dy, dx)`` in ``[-max_px, max_px]``;
    pixels shifted in are 0 (background). Same shape as the input."""
    if max_px <= 0 or len(images) == 0:
        return images.copy()
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (max_px, max_px), (max_px, max_px), (0, 0)))
    dy, dx = rng.integers(0, 2 * max_px + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
