"""Blur corruptions. Lengths are in pixels on a 32-pixel image (``px@32``) and scale with
the image's shorter side; zoom factors are relative and need no scaling.

Tables are adapted from CIFAR-10-C (Hendrycks & Dietterich, 2019): defocus radii were raised
slightly so that every severity differs on 28x28 digits (CIFAR-10-C's radius 0.3-0.5 disks
reduce to a single pixel), and motion blur, done there with ImageMagick, is here an
average of bilinear shifts along a centred line (a per-image line kernel applied by FFT).
"""

from __future__ import annotations

import numpy as np

from ._base import SPATIAL_UNIT, register_corruption
from ._warp import apply_separable, linear_zoom_matrix

GAUSSIAN_BLUR = ((0.4,), (0.6,), (0.7,), (0.8,), (1.0,))
DEFOCUS_BLUR = ((0.5, 0.4), (0.8, 0.4), (1.1, 0.5), (1.5, 0.5), (2.0, 0.5))
MOTION_BLUR = ((2.0,), (3.0,), (4.0,), (5.5,), (7.0,))
ZOOM_BLUR = ((1.06,), (1.11,), (1.16,), (1.21,), (1.26,))
ZOOM_STEP = 0.01
SUPERSAMPLE = 8


@register_corruption(
    "gaussian_blur",
    family="blur",
    description="Gaussian filter of standard deviation sigma",
    params=("sigma",),
    units=(SPATIAL_UNIT,),
    table=GAUSSIAN_BLUR,
    random=False,
)
def gaussian_blur(x: np.ndarray, sigma: float, *, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect")


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised ``float32`` disk of ``radius`` pixels, anti-aliased by supersampling."""
    half = int(np.ceil(radius))
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    fine = np.add.outer(np.arange(-half, half + 1), offsets).ravel()
    yy, xx = np.meshgrid(fine, fine, indexing="ij")
    inside = (yy**2 + xx**2 <= radius**2).astype(np.float32)
    size = 2 * half + 1
    kernel = inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    return kernel / kernel.sum()


@register_corruption(
    "defocus_blur",
    family="blur",
    description="convolve with a disk of the given radius, then a small Gaussian (aliasing)",
    params=("radius", "alias_sigma"),
    units=(SPATIAL_UNIT, SPATIAL_UNIT),
    table=DEFOCUS_BLUR,
    random=False,
)
def defocus_blur(
    x: np.ndarray, radius: float, alias_sigma: float, *, rng: np.random.Generator
) -> np.ndarray:
    from scipy import ndimage

    kernel = disk_kernel(radius)[None, :, :, None]
    out = ndimage.convolve(x, kernel, mode="reflect")
    return ndimage.gaussian_filter(out, sigma=(0, alias_sigma, alias_sigma, 0), mode="reflect")


@register_corruption(
    "motion_blur",
    family="blur",
    description="average along a centred line of the given length, random direction per image",
    params=("length",),
    units=(SPATIAL_UNIT,),
    table=MOTION_BLUR,
    random=True,
)
def motion_blur(x: np.ndarray, length: float, *, rng: np.random.Generator) -> np.ndarray:
    n, h, w, _ = x.shape
    angle = rng.uniform(0, np.pi, size=n)
    pad = int(np.ceil(length / 2)) + 1
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    hp, wp = padded.shape[1:3]
    kernel = line_kernels(angle, length, (hp, wp))
    spectrum = np.fft.rfft2(padded, axes=(1, 2)) * np.fft.rfft2(kernel, axes=(1, 2))[..., None]
    out = np.fft.irfft2(spectrum, s=(hp, wp), axes=(1, 2))
    return out[:, pad : pad + h, pad : pad + w].astype(np.float32)


def line_kernels(angle: np.ndarray, length: float, shape: tuple[int, int]) -> np.ndarray:
    """Per-image centred line kernels ``(N, *shape)`` for circular FFT convolution.

    Samples every half pixel along the line are splatted bilinearly at wrapped offsets, so
    the convolution equals averaging bilinear shifts of the image along the line.
    """
    n = len(angle)
    hp, wp = shape
    steps = max(2, int(np.ceil(2 * length)) + 1)
    kernel = np.zeros((n, hp, wp), dtype=np.float64)
    rows = np.arange(n)
    for t in np.linspace(-length / 2, length / 2, steps):
        dy, dx = t * np.sin(angle), t * np.cos(angle)
        y0, x0 = np.floor(dy), np.floor(dx)
        fy, fx = dy - y0, dx - x0
        for oy, ox, weight in (
            (0, 0, (1 - fy) * (1 - fx)),
            (0, 1, (1 - fy) * fx),
            (1, 0, fy * (1 - fx)),
            (1, 1, fy * fx),
        ):
            yi = (y0.astype(np.intp) + oy) % hp
            xi = (x0.astype(np.intp) + ox) % wp
            np.add.at(kernel, (rows, yi, xi), weight / steps)
    return kernel


@register_corruption(
    "zoom_blur",
    family="blur",
    description="average of centre zooms from 1 to max_zoom in steps of 0.01",
    params=("max_zoom",),
    units=("factor",),
    table=ZOOM_BLUR,
    random=False,
)
def zoom_blur(x: np.ndarray, max_zoom: float, *, rng: np.random.Generator) -> np.ndarray:
    _, h, w, _ = x.shape
    zooms = np.arange(1.0, max_zoom + ZOOM_STEP / 2, ZOOM_STEP)
    out = np.zeros_like(x)
    for z in zooms:
        out += apply_separable(x, linear_zoom_matrix(h, z), linear_zoom_matrix(w, z))
    return out / np.float32(len(zooms))
