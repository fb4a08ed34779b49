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

from .._augment import random_shift as random_shift
