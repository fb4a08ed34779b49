"""Photometric and digital corruptions: contrast, brightness, fog, pixelate, JPEG.

Tables follow CIFAR-10-C (Hendrycks & Dietterich, 2019), except pixelate: CIFAR-10-C's
fractions near 1 (0.95, 0.85) alias on 28x28 images and hurt *less* than 0.9, so the table
uses 0.9 ... 0.45, whose error grows with severity on 28- and 32-pixel images (on 8x8
digits two severities may round to the same size). Fog adds a plasma fractal generated
(diamond-square) at the next power of two above the image size, one per image.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ._base import register_corruption
from ._warp import apply_separable, area_matrix

CONTRAST = ((0.75,), (0.5,), (0.4,), (0.3,), (0.15,))
BRIGHTNESS = ((0.05,), (0.1,), (0.15,), (0.2,), (0.3,))
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))
PIXELATE = ((0.9,), (0.8,), (0.7,), (0.6,), (0.45,))
JPEG_COMPRESSION = ((80.0,), (65.0,), (58.0,), (50.0,), (40.0,))


@register_corruption(
    "contrast",
    family="photometric",
    description="pull every image towards its mean intensity: (x - m) * factor + m",
    params=("factor",),
    units=("factor",),
    table=CONTRAST,
    random=False,
)
def contrast(x: np.ndarray, factor: float, *, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * np.float32(factor) + mean


@register_corruption(
    "brightness",
    family="photometric",
    description="add delta to the HSV value channel (plain addition for grayscale)",
    params=("delta",),
    units=("intensity",),
    table=BRIGHTNESS,
    random=False,
)
def brightness(x: np.ndarray, delta: float, *, rng: np.random.Generator) -> np.ndarray:
    value = x.max(axis=3, keepdims=True)
    new_value = np.clip(value + np.float32(delta), 0, 1)
    ratio = np.divide(new_value, value, out=np.zeros_like(value), where=value > 0)
    return np.where(value > 0, x * ratio, new_value)  # hue and saturation unchanged


def plasma_fractal(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` diamond-square fractals, ``float32`` ``(n, size, size)`` in [0, 1].

    ``size`` must be a power of two; a smaller ``decay`` gives a rougher pattern.
    """
    maps = np.zeros((n, size, size), dtype=np.float64)
    step = size
    wibble = 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-1, 1, total.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        maps[:, half:size:step, half:size:step] = noisy_mean(square)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = noisy_mean(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = noisy_mean(top)
        step = half
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    maps /= np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
    return maps.astype(np.float32)


@register_corruption(
    "fog",
    family="photometric",
    description="add strength * plasma fractal haze, then rescale to keep the image maximum",
    params=("strength", "decay"),
    units=("intensity", "roughness (lower = rougher)"),
    table=FOG,
    random=True,
)
def fog(x: np.ndarray, strength: float, decay: float, *, rng: np.random.Generator) -> np.ndarray:
    n, h, w, _ = x.shape
    size = 1 << int(np.ceil(np.log2(max(h, w, 2))))
    haze = plasma_fractal(n, size, decay, rng)[:, :h, :w, None]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    return (x + np.float32(strength) * haze) * peak / (peak + np.float32(strength))


@register_corruption(
    "pixelate",
    family="photometric",
    description="box-downsample to fraction of the size, then box-upsample back",
    params=("fraction",),
    units=("of image side",),
    table=PIXELATE,
    random=False,
)
def pixelate(x: np.ndarray, fraction: float, *, rng: np.random.Generator) -> np.ndarray:
    _, h, w, _ = x.shape
    hs, ws = max(1, round(h * fraction)), max(1, round(w * fraction))
    small = apply_separable(x, area_matrix(hs, h), area_matrix(ws, w))
    small = np.rint(np.clip(small, 0, 1) * 255) / np.float32(255)  # 8-bit like an image file
    return apply_separable(small, area_matrix(h, hs), area_matrix(w, ws))


@register_corruption(
    "jpeg_compression",
    family="photometric",
    description="encode and decode as JPEG (Pillow) at the given quality",
    params=("quality",),
    units=("JPEG quality 1..95",),
    table=JPEG_COMPRESSION,
    random=False,
)
def jpeg_compression(x: np.ndarray, quality: float, *, rng: np.random.Generator) -> np.ndarray:
    as_uint8 = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
    out = np.empty_like(x)
    for i, image in enumerate(as_uint8):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=int(quality))
        decoded = np.asarray(Image.open(buffer), dtype=np.float32) / 255
        out[i] = decoded.reshape(image.shape)
    return out
