"""Accuracy-latency Pareto fronts over budgets and methods."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._figures import pyplot, save_figure
from ..lut import LatencyPredictor
from ._search import SearchConfig, prune


def pareto_sweep(
    model: nn.Module,
    example_input: torch.Tensor,
    predictor: LatencyPredictor,
    calib_images: torch.Tensor,
    evaluate: Callable[[nn.Module], float],
    measure: Callable[[nn.Module], float],
    budgets: Sequence[float],
    methods: Sequence[str],
    config: SearchConfig | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Prune at every budget with every method; measure and evaluate each result.

    ``evaluate(model) -> accuracy`` and ``measure(model) -> ms`` are supplied by the caller
    (held-out labelled samples; the target backend). The unpruned model is a row with
    method ``original``. Columns: method, budget, predicted_ms, measured_ms, accuracy,
    search_s, on_front (non-dominated over all rows: nothing is both faster and at least
    as accurate).
    """
    base = config or SearchConfig(budget=0.5, progress=False)
    original = {
        "method": "original",
        "budget": 1.0,
        "predicted_ms": np.nan,
        "measured_ms": measure(model),
        "accuracy": evaluate(model),
        "search_s": 0.0,
    }
    rows = [original]
    jobs = [(m, b) for m in methods for b in budgets]
    for method, budget in tqdm(jobs, desc="pareto", disable=None if progress else True):
        result = prune(model, example_input, predictor, calib_images,
                       replace(base, budget=budget, method=method, progress=False))  # fmt: skip
        rows.append({"method": method, "budget": budget,
                     "predicted_ms": result.predicted_latency_ms,
                     "measured_ms": measure(result.model), "accuracy": evaluate(result.model),
                     "search_s": result.search_s})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["on_front"] = pareto_front(frame["measured_ms"], frame["accuracy"])
    return frame


def pareto_front(latency_ms, accuracy) -> np.ndarray:
    """True where no other point is faster-or-equal and more-or-equally accurate (and
    strictly better in one)."""
    lat, acc = np.asarray(latency_ms, float), np.asarray(accuracy, float)
    front = np.ones(len(lat), dtype=bool)
    for i in range(len(lat)):
        better = (lat <= lat[i]) & (acc >= acc[i]) & ((lat < lat[i]) | (acc > acc[i]))
        front[i] = not better.any()
    return front


def plot_pareto(frame: pd.DataFrame, path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy against measured latency per method; the front is drawn as a step line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for (method, group), marker in zip(frame.groupby("method", sort=False), "*osd^vPXh<>",
                                       strict=False):  # fmt: skip
        ax.scatter(group["measured_ms"], 100 * group["accuracy"], marker=marker, s=40,
                   label=method, zorder=3)  # fmt: skip
    front = frame[frame["on_front"]].sort_values("measured_ms")
    ax.step(front["measured_ms"], 100 * front["accuracy"], where="post", color="0.3", lw=1,
            ls="--", label="Pareto front", zorder=2)  # fmt: skip
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
