"""Training-time augmentation: random shifts only (the corruptions are the test-time shift)."""

from __future__ import annotations

from .._augment import random_shift as random_shift


def auto_shift_px(image_hw: tuple[int, int]) -> int:
    """The default maximum shift: 2 px on a 28x28 digit, scaled with size, at least 1."""
    return max(1, round(min(image_hw) * 2 / 28))
