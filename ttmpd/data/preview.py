"""A picture of every corruption at every severity on one image (a PNG grid)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._io import atomic_path
from .corruptions import corrupt, list_corruptions
from .dataset import as_nhwc

CELL_INCHES = 0.9


def corruption_grid(
    image: np.ndarray, names: Sequence[str] | None = None, seed: int = 0
) -> np.ndarray:
    """Corrupt one image at severities 0..5 for each corruption.

    Args:
        image: ``uint8`` ``(H, W)`` or ``(H, W, C)``.
        names: corruptions (rows); all registered ones by default.
        seed: corruption seed.

    Returns:
        ``uint8`` ``(len(names), 6, H, W, C)``.
    """
    batch = as_nhwc(np.asarray(image)[None], what="preview image")
    names = list(names) if names is not None else list_corruptions()
    return np.stack([np.concatenate([corrupt(batch, n, s, seed) for s in range(6)]) for n in names])


def save_preview(
    image: np.ndarray,
    out_path: str | Path,
    *,
    names: Sequence[str] | None = None,
    seed: int = 0,
    title: str = "",
) -> Path:
    """Write a PNG grid: rows = corruptions, columns = severities 0 (clean) to 5."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(names) if names is not None else list_corruptions()
    grid = corruption_grid(image, names, seed)
    rows, cols = grid.shape[:2]
    fig = Figure(figsize=(cols * CELL_INCHES + 1.6, rows * CELL_INCHES + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            cell = grid[r, c]
            if cell.shape[-1] == 1:
                ax.imshow(cell[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(cell, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if c == 0 else f"sev {c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(names[r], fontsize=7, rotation=0, ha="right", va="center")
    height = fig.get_figheight()
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    fig.subplots_adjust(
        left=0.2, right=0.98, top=1 - 0.55 / height, bottom=0.01, wspace=0.05, hspace=0.08
    )
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    return Path(out_path)
