"""Noise corruptions (per pixel and channel, random). Intensities are on the [0, 1] scale.

Severity tables follow CIFAR-10-C (Hendrycks & Dietterich, 2019), whose images have the same
scale as MNIST, so no size scaling is needed. Note that shot and speckle noise are
multiplicative: the black MNIST background stays black, only the strokes get noisy.
"""

from __future__ import annotations

import numpy as np

from ._base import register_corruption

GAUSSIAN_NOISE = ((0.04,), (0.06,), (0.08,), (0.09,), (0.10,))
SHOT_NOISE = ((500.0,), (250.0,), (100.0,), (75.0,), (50.0,))
IMPULSE_NOISE = ((0.01,), (0.02,), (0.03,), (0.05,), (0.07,))
SPECKLE_NOISE = ((0.06,), (0.10,), (0.12,), (0.16,), (0.20,))


@register_corruption(
    "gaussian_noise",
    family="noise",
    description="add N(0, sigma^2) to every pixel and channel",
    params=("sigma",),
    units=("intensity",),
    table=GAUSSIAN_NOISE,
    random=True,
)
def gaussian_noise(x: np.ndarray, sigma: float, *, rng: np.random.Generator) -> np.ndarray:
    return x + np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32)


@register_corruption(
    "shot_noise",
    family="noise",
    description="Poisson photon noise: Poisson(x * photons) / photons",
    params=("photons",),
    units=("photons at full intensity",),
    table=SHOT_NOISE,
    random=True,
)
def shot_noise(x: np.ndarray, photons: float, *, rng: np.random.Generator) -> np.ndarray:
    return (rng.poisson(x * photons) / photons).astype(np.float32)


@register_corruption(
    "impulse_noise",
    family="noise",
    description="salt-and-pepper: a fraction of values set to 0 or 1 (half each)",
    params=("amount",),
    units=("fraction of values",),
    table=IMPULSE_NOISE,
    random=True,
)
def impulse_noise(x: np.ndarray, amount: float, *, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(x.shape, dtype=np.float32)
    out = x.copy()
    out[u < amount / 2] = 0.0
    out[(u >= amount / 2) & (u < amount)] = 1.0
    return out


@register_corruption(
    "speckle_noise",
    family="noise",
    description="multiplicative noise: x + x * N(0, sigma^2)",
    params=("sigma",),
    units=("relative",),
    table=SPECKLE_NOISE,
    random=True,
)
def speckle_noise(x: np.ndarray, sigma: float, *, rng: np.random.Generator) -> np.ndarray:
    return x + x * np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32)
