"""Plots people would rather look at than read: predicted vs measured, per-layer latency."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._figures import pyplot, save_figure


def plot_predicted_vs_measured(
    measured_ms, predicted: dict[str, np.ndarray], path: str | os.PathLike, title: str = ""
) -> Path:
    """Scatter of each method's prediction against measured latency with the ±10% band."""
    plt = pyplot()
    measured = np.asarray(measured_ms, dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = measured.min() * 0.8, measured.max() * 1.2
    line = np.linspace(lo, hi, 2)
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="±10%")
    ax.plot(line, line, color="0.4", lw=1)
    for (name, values), marker in zip(predicted.items(), "os^dv", strict=False):
        ax.scatter(measured, values, s=18, marker=marker, alpha=0.8, label=name)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def plot_layer_latency(
    breakdown: pd.DataFrame, path: str | os.PathLike, title: str = "", top: int = 40
) -> Path:
    """Horizontal bars of per-unit latency (the ``top`` slowest), measured vs predicted."""
    plt = pyplot()
    rows = breakdown.nlargest(top, "latency_ms").iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(rows) + 1.2))
    colors = np.where(rows["measured"].to_numpy(dtype=bool), "tab:blue", "tab:orange")
    labels = [f"{n} ({op})" for n, op in zip(rows["name"], rows["op"], strict=True)]
    ax.barh(labels, rows["latency_ms"], color=colors)
    ax.set_xlabel("latency (ms)  — blue: measured in the LUT, orange: predicted")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7)
    return save_figure(fig, path)
