"""The jobs of a Pareto sweep: each (method, budget) is a compute step and a measure step.

The compute step prunes (search, adaptive BN) and evaluates accuracy on any CPU; the
measure step only measures the pruned model's latency and holds the device resource while
it does, so on a Ray cluster many searches run in parallel while measurements on one
device run one at a time. The unpruned model is the job ``original`` (no search).
A job's value is its CSV row, a JSON-serialisable dict, so it can be journaled.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..executor import Job, Resources, Step
from ..lut import LatencyPredictor
from ._plan import PrunePlan
from ._problem import SearchConfig
from ._search import prune

ORIGINAL = "original"


@dataclass(frozen=True)
class SweepContext:
    """What every job of a sweep shares (shipped to each worker once).

    ``evaluate(model) -> accuracy`` and ``measure(model) -> ms`` come from the caller; both
    must be picklable to run on Ray (functions defined at module level, or closures over
    picklable objects).
    """

    model: nn.Module
    example_input: torch.Tensor
    predictor: LatencyPredictor
    images: torch.Tensor
    evaluate: Callable[[nn.Module], float]
    measure: Callable[[nn.Module], float]
    config: SearchConfig


@dataclass(frozen=True)
class Candidate:
    """A compute step's result: the pruned model and everything but its latency."""

    model: nn.Module
    predicted_ms: float
    accuracy: float
    search_s: float
    plan_id: str


def plan_id(plan: PrunePlan) -> str:
    """12 hex digits of sha256 over the plan's kept channels: equal ids, equal plans."""
    groups = json.dumps(plan.to_dict()["groups"], sort_keys=True)
    return hashlib.sha256(groups.encode()).hexdigest()[:12]


def job_key(method: str, budget: float) -> str:
    return ORIGINAL if method == ORIGINAL else f"{method}@{budget:g}"


def prune_step(ctx: SweepContext, method: str, budget: float) -> Candidate:
    """Search (none for ``original``) and evaluate; no latency is measured here."""
    if method == ORIGINAL:
        return Candidate(ctx.model, math.nan, ctx.evaluate(ctx.model), 0.0, "")
    config = replace(ctx.config, budget=budget, method=method, progress=False)
    result = prune(ctx.model, ctx.example_input, ctx.predictor, ctx.images, config)
    return Candidate(result.model, result.predicted_latency_ms, ctx.evaluate(result.model),
                     result.search_s, plan_id(result.plan))  # fmt: skip


def measure_step(candidate: Candidate, ctx: SweepContext, method: str, budget: float) -> dict:
    """The CSV row of a job: the candidate plus its measured latency (ms)."""
    return {
        "method": method,
        "budget": budget,
        "predicted_ms": candidate.predicted_ms,
        "measured_ms": float(ctx.measure(candidate.model)),
        "accuracy": float(candidate.accuracy),
        "search_s": candidate.search_s,
        "plan_id": candidate.plan_id,
    }


def sweep_jobs(
    ctx: SweepContext,
    budgets: Sequence[float],
    methods: Sequence[str],
    device: str | None = None,
    compute_cpus: float = 1.0,
    measure_cpus: float = 1.0,
) -> list[Job]:
    """The ``original`` job, then one job per (method, budget), methods outermost.

    Compute steps hold ``compute_cpus``; measure steps hold ``measure_cpus`` and one unit
    of ``device`` (None: no device resource, e.g. on the local executor).
    """
    compute = Step(prune_step, Resources(cpus=compute_cpus), "prune")
    measure = Step(measure_step, Resources(cpus=measure_cpus, device=device), "measure")
    pairs = [(ORIGINAL, 1.0)] + [(m, b) for m in methods for b in budgets]
    return [Job(job_key(m, b), (compute, measure), (ctx, m, b)) for m, b in pairs]
