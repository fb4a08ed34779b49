"""Accuracy-latency Pareto fronts over budgets and methods."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._figures import pyplot, save_figure
from ..executor import Executor, JobJournal, JobOutcome, LocalExecutor, run_jobs
from ..lut import LatencyPredictor
from ._problem import SearchConfig
from ._sweep_jobs import SweepContext, sweep_jobs


def pareto_sweep(
    model: nn.Module,
    example_input: torch.Tensor,
    predictor: LatencyPredictor,
    images: torch.Tensor,
    evaluate: Callable[[nn.Module], float],
    measure: Callable[[nn.Module], float],
    budgets: Sequence[float],
    methods: Sequence[str],
    config: SearchConfig | None = None,
    progress: bool = True,
    *,
    executor: Executor | None = None,
    journal: JobJournal | None = None,
    device: str | None = None,
    measure_cpus: float = 1.0,
    on_outcome: Callable[[JobOutcome], None] | None = None,
) -> pd.DataFrame:
    """Prune at every budget with every method; measure and evaluate each result.

    ``evaluate(model) -> accuracy`` and ``measure(model) -> ms`` are supplied by the caller
    (held-out labelled samples; the target backend). The unpruned model is a row with
    method ``original``. Columns: method, budget, predicted_ms, measured_ms, accuracy,
    search_s, plan_id (:func:`~ttmpd.pruning._sweep_jobs.plan_id`), on_front
    (non-dominated over all rows: nothing is both faster and at least as accurate).

    Each row is a job of a compute and a measure step (:mod:`ttmpd.pruning._sweep_jobs`)
    run on ``executor`` (default: one after another in this process); the measure steps
    hold one unit of the ``device`` resource and ``measure_cpus`` CPUs (the backend's
    threads: Ray then books that many of the node's CPUs for the measurement, not for
    searches). Finished rows go to ``journal`` as they come, and rows already there are not
    computed again. Rows come in job order whatever order they finished in.
    ``on_outcome`` sees every job as it finishes (with the spans of its steps: where and
    when each ran).
    """
    base = config or SearchConfig(budget=0.5, progress=False)
    ctx = SweepContext(model, example_input, predictor, images, evaluate, measure, base)
    jobs = sweep_jobs(ctx, budgets, methods, device, measure_cpus=measure_cpus)
    bar = tqdm(total=len(jobs), desc="pareto", disable=None if progress else True)

    def finished(outcome: JobOutcome) -> None:
        bar.update()
        if on_outcome is not None:
            on_outcome(outcome)

    try:
        record = run_jobs(executor or LocalExecutor(), jobs, journal, on_outcome=finished)
    finally:
        bar.close()
    frame = pd.DataFrame(list(record.values.values()))
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
