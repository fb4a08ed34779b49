"""Batched resampling helpers: bilinear sampling at per-image coordinates, affine grids,
and separable linear/area resampling matrices. All work on ``float32`` ``(N, H, W, C)``."""

from __future__ import annotations

from typing import Literal

import numpy as np

Mode = Literal["constant", "reflect", "nearest"]


def _wrap(index: np.ndarray, size: int, mode: Mode) -> tuple[np.ndarray, np.ndarray | None]:
    """Map integer indices into ``0..size-1``; for ``"constant"`` also return a validity mask."""
    if mode == "constant":
        valid = (index >= 0) & (index < size)
        return np.clip(index, 0, size - 1), valid
    if mode == "nearest":
        return np.clip(index, 0, size - 1), None
    period = np.mod(index, 2 * size)  # half-sample symmetric: d c b a | a b c d | d c b a
    return np.where(period < size, period, 2 * size - 1 - period), None


def sample_bilinear(
    x: np.ndarray, ys: np.ndarray, xs: np.ndarray, mode: Mode = "constant"
) -> np.ndarray:
    """Sample each image at its own source coordinates with bilinear interpolation.

    Args:
        x: ``float32`` ``(N, H, W, C)`` images.
        ys, xs: ``float`` ``(N, Ho, Wo)`` source row/column of every output pixel.
        mode: outside the image: ``"constant"`` (0), ``"reflect"`` or ``"nearest"``.

    Returns:
        ``float32`` ``(N, Ho, Wo, C)``.
    """
    n, h, w, c = x.shape
    flat = x.reshape(n * h * w, c)
    y0f = np.floor(ys)
    x0f = np.floor(xs)
    wy = (ys - y0f).astype(np.float32)[..., None]
    wx = (xs - x0f).astype(np.float32)[..., None]
    y0 = y0f.astype(np.intp)
    x0 = x0f.astype(np.intp)
    base = (np.arange(n, dtype=np.intp) * (h * w))[:, None, None]
    out = np.zeros((*ys.shape, c), dtype=np.float32)
    for dy, dx, weight in (
        (0, 0, (1 - wy) * (1 - wx)),
        (0, 1, (1 - wy) * wx),
        (1, 0, wy * (1 - wx)),
        (1, 1, wy * wx),
    ):
        yi, vy = _wrap(y0 + dy, h, mode)
        xi, vx = _wrap(x0 + dx, w, mode)
        values = flat[base + yi * w + xi]
        if vy is not None and vx is not None:
            weight = weight * (vy & vx)[..., None]
        out += weight * values
    return out


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates ``(H, W)`` of every pixel, relative to the image centre."""
    ys, xs = np.meshgrid(
        np.arange(h, dtype=np.float64) - (h - 1) / 2,
        np.arange(w, dtype=np.float64) - (w - 1) / 2,
        indexing="ij",
    )
    return ys, xs


def affine_sample(
    x: np.ndarray, matrix: np.ndarray, shift: np.ndarray, mode: Mode = "constant"
) -> np.ndarray:
    """Warp every image: output pixel ``p`` reads source ``matrix @ (p - c) + c - shift``.

    Args:
        x: ``float32`` ``(N, H, W, C)``.
        matrix: ``(N, 2, 2)`` inverse maps in (row, column) order; ``c`` is the image centre.
        shift: ``(N, 2)`` output displacement in pixels (row, column).
        mode: boundary handling, see :func:`sample_bilinear`.
    """
    _, h, w, _ = x.shape
    gy, gx = pixel_grid(h, w)
    ys = matrix[:, 0, 0, None, None] * gy + matrix[:, 0, 1, None, None] * gx
    xs = matrix[:, 1, 0, None, None] * gy + matrix[:, 1, 1, None, None] * gx
    ys = ys + (h - 1) / 2 - shift[:, 0, None, None]
    xs = xs + (w - 1) / 2 - shift[:, 1, None, None]
    return sample_bilinear(x, ys, xs, mode)


def linear_zoom_matrix(size: int, factor: float) -> np.ndarray:
    """``(size, size)`` matrix magnifying a 1-D signal by ``factor`` about its centre
    (linear interpolation, edge values repeated)."""
    centre = (size - 1) / 2
    src = np.clip((np.arange(size) - centre) / factor + centre, 0, size - 1)
    low = np.floor(src).astype(np.intp)
    high = np.minimum(low + 1, size - 1)
    frac = src - low
    m = np.zeros((size, size), dtype=np.float32)
    rows = np.arange(size)
    np.add.at(m, (rows, low), 1 - frac)
    np.add.at(m, (rows, high), frac)
    return m


def area_matrix(size_out: int, size_in: int) -> np.ndarray:
    """``(size_out, size_in)`` box-filter (area-average) resampling matrix, like PIL's BOX."""
    edges_out = np.arange(size_out + 1) * (size_in / size_out)
    lo = np.maximum(edges_out[:-1, None], np.arange(size_in)[None, :])
    hi = np.minimum(edges_out[1:, None], np.arange(size_in)[None, :] + 1)
    overlap = np.clip(hi - lo, 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def apply_separable(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows @ image @ cols.T`` for every image and channel of ``(N, H, W, C)``."""
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    out = rows @ nchw @ cols.T
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1), dtype=np.float32)
