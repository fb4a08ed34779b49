"""A readable PNG of a robustness table: rows = corruptions, columns = severities."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._io import atomic_path
from ..errors import InputError
from .evaluate import CLEAN, summarize

if TYPE_CHECKING:
    import pandas as pd

MEAN_ROW = "mean"


def accuracy_grid(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy % pivoted to rows = corruptions (table order) + ``"mean"``, columns = severity."""
    corrupted = table[table["corruption"] != CLEAN]
    if corrupted.empty:
        raise InputError("the table has no corrupted rows to plot; evaluate some corruptions")
    order = list(dict.fromkeys(corrupted["corruption"]))
    grid = corrupted.pivot(index="corruption", columns="severity", values="accuracy")
    grid = grid.reindex(order) * 100
    grid.loc[MEAN_ROW] = grid.mean(axis=0)
    return grid


def save_heatmap(table: pd.DataFrame, out_path: str | Path, *, title: str = "") -> Path:
    """Write the accuracy heatmap (annotated, %, last row = mean over corruptions) as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = accuracy_grid(table)
    clean = summarize(table)["clean"]
    values = grid.to_numpy(dtype=float)
    rows, cols = values.shape
    fig = Figure(figsize=(1.2 + 0.75 * cols + 1.0, 0.9 + 0.32 * rows))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for r in range(rows):
        for c in range(cols):
            v = values[r, c]
            if np.isfinite(v):
                weight = "bold" if r == rows - 1 else "normal"
                ax.text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=8, weight=weight)
    ax.set_xticks(range(cols), [f"sev {s}" for s in grid.columns], fontsize=8)
    ax.set_yticks(range(rows), list(grid.index), fontsize=8)
    ax.axhline(rows - 1.5, color="black", linewidth=1)
    ax.tick_params(length=0)
    heading = f"{title}: accuracy (%)" if title else "accuracy (%)"
    if clean is not None:
        heading += f" — clean {clean * 100:.1f}%"
    ax.set_title(heading, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03).ax.tick_params(labelsize=7)
    fig.tight_layout()
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    return Path(out_path)
