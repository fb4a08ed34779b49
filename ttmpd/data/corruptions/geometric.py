"""Geometric corruptions in the spirit of MNIST-C (Mu & Gilmer, 2019): each image gets its
own random direction or sign, with a magnitude fixed by the severity. Pixels that come from
outside the image are black (0), like MNIST's background; the elastic transform reflects.

Elastic displacement lengths are ``px@32`` (scaled with image size); angles, shear and scale
factors are relative, and translation is a fraction of the image side.
"""

from __future__ import annotations

import numpy as np

from ._base import SPATIAL_UNIT, register_corruption
from ._warp import affine_sample, sample_bilinear

ELASTIC_TRANSFORM = ((0.5, 4.0), (0.8, 4.0), (1.1, 4.0), (1.4, 4.0), (1.7, 4.0))
ROTATE = ((8.0,), (16.0,), (24.0,), (32.0,), (40.0,))
SHEAR = ((0.1,), (0.2,), (0.3,), (0.4,), (0.5,))
SCALE = ((0.1,), (0.2,), (0.3,), (0.4,), (0.5,))
TRANSLATE = ((0.03,), (0.06,), (0.1,), (0.15,), (0.2,))


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=n)


@register_corruption(
    "elastic_transform",
    family="geometric",
    description="displace pixels by a smooth random field of RMS length alpha (smoothing sigma)",
    params=("alpha", "sigma"),
    units=(SPATIAL_UNIT, SPATIAL_UNIT),
    table=ELASTIC_TRANSFORM,
    random=True,
)
def elastic_transform(
    x: np.ndarray, alpha: float, sigma: float, *, rng: np.random.Generator
) -> np.ndarray:
    from scipy import ndimage

    n, h, w, _ = x.shape
    fields = []
    for _ in range(2):
        raw = rng.uniform(-1, 1, size=(n, h, w))
        smooth = ndimage.gaussian_filter(raw, sigma=(0, sigma, sigma), mode="reflect")
        rms = np.sqrt(np.mean(smooth**2, axis=(1, 2), keepdims=True))
        fields.append(alpha * smooth / np.maximum(rms, 1e-12))
    gy, gx = np.meshgrid(
        np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
    )
    return sample_bilinear(x, gy[None] + fields[0], gx[None] + fields[1], mode="reflect")


@register_corruption(
    "rotate",
    family="geometric",
    description="rotate about the centre by +-degrees (random sign per image)",
    params=("degrees",),
    units=("degrees",),
    table=ROTATE,
    random=True,
)
def rotate(x: np.ndarray, degrees: float, *, rng: np.random.Generator) -> np.ndarray:
    theta = np.deg2rad(degrees) * _signs(rng, len(x))
    cos, sin = np.cos(theta), np.sin(theta)
    inverse = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)
    return affine_sample(x, inverse, np.zeros((len(x), 2)))


@register_corruption(
    "shear",
    family="geometric",
    description="shear by +-factor along a random axis (rows or columns) per image",
    params=("factor",),
    units=("shear factor",),
    table=SHEAR,
    random=True,
)
def shear(x: np.ndarray, factor: float, *, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    s = factor * _signs(rng, n)
    along_columns = rng.random(n) < 0.5
    inverse = np.tile(np.eye(2), (n, 1, 1))
    inverse[along_columns, 1, 0] = -s[along_columns]
    inverse[~along_columns, 0, 1] = -s[~along_columns]
    return affine_sample(x, inverse, np.zeros((n, 2)))


@register_corruption(
    "scale",
    family="geometric",
    description="zoom about the centre by (1 + amount) or 1 / (1 + amount), random per image",
    params=("amount",),
    units=("relative",),
    table=SCALE,
    random=True,
)
def scale(x: np.ndarray, amount: float, *, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    factor = (1.0 + amount) ** _signs(rng, n)
    inverse = np.eye(2)[None] / factor[:, None, None]
    return affine_sample(x, inverse, np.zeros((n, 2)))


@register_corruption(
    "translate",
    family="geometric",
    description="shift by fraction of the image side in a random direction per image",
    params=("fraction",),
    units=("of image side",),
    table=TRANSLATE,
    random=True,
)
def translate(x: np.ndarray, fraction: float, *, rng: np.random.Generator) -> np.ndarray:
    n, h, w, _ = x.shape
    angle = rng.uniform(0, 2 * np.pi, size=n)
    distance = fraction * min(h, w)
    shift = np.stack([distance * np.sin(angle), distance * np.cos(angle)], axis=1)
    return affine_sample(x, np.tile(np.eye(2), (n, 1, 1)), shift)
