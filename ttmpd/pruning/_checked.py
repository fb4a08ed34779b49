"""Prune to a *measured* budget: search on predicted latency, measure, search again on a miss."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..profiler import BackendBase, TimingConfig, rounds_decided, rounds_settled
from ._calibrate import MODEL_TIMING
from ._problem import PruneResult

logger = logging.getLogger(__name__)

#: A prune measured within ``[1 − UNDER, 1 + OVER] · budget`` of the original needs no
#: further search; a new search aims ``AIM`` under the budget, to leave room for noise.
BUDGET_OVER, BUDGET_UNDER, BUDGET_AIM = 0.02, 0.10, 0.03

#: Paired measurements (original against prune) behind every measured figure of a check.
MEASURE_ROUNDS = 3


def budget_band(budget: float) -> tuple[float, float]:
    """``(lo, hi) = ((1 − BUDGET_UNDER) · budget, (1 + BUDGET_OVER) · budget)``: the measured
    fractions of the original a checked prune may land in without a further search."""
    return budget * (1 - BUDGET_UNDER), budget * (1 + BUDGET_OVER)


def measure_beside(
    original: nn.Module,
    model: nn.Module,
    example_input: torch.Tensor,
    backend: BackendBase,
    rounds: int = MEASURE_ROUNDS,
    timing: TimingConfig = MODEL_TIMING,
    thresholds: Sequence[float] = (),
) -> tuple[float, float]:
    """``(original_ms, model_ms)`` with ``model_ms = original_ms · ratio``.

    ``ratio`` is the median over up to ``rounds`` paired measurements
    (:meth:`~ttmpd.profiler.BackendBase.measure_paired`: the two models sample by sample in
    alternation, so a host slowdown scales both) of their median per-pair ratio;
    ``original_ms`` is the median of the original's rounds. A bad round (a runner built
    unluckily) is outvoted. Rounds stop early once the rest cannot move the median round's
    ratio by more than ``timing.target_rel_ci`` (:func:`~ttmpd.profiler.rounds_settled`;
    for 3 rounds: the first two agree). With ``thresholds`` (ratios a caller decides on,
    such as a budget's edges), a round also stops sampling once its ratio's CI holds none
    of them, and rounds stop once the rest cannot move the median round across one
    (:func:`~ttmpd.profiler.rounds_decided`; for 3 rounds: the first two fall on the same
    side of each): a clear decision needs fewer samples than a 1% figure."""
    if rounds < 1:
        raise InputError(f"rounds must be >= 1, got {rounds}")
    pairs = []
    while len(pairs) < rounds:
        pairs.append(backend.measure_paired(original, model, example_input, timing, thresholds))
        ratios = [p.ratio for p in pairs]
        if rounds_settled(ratios, rounds, timing.target_rel_ci) or (
            thresholds and rounds_decided(ratios, rounds, thresholds)
        ):
            break
    original_ms = float(np.median([p.reference.median_ms for p in pairs]))
    return original_ms, original_ms * float(np.median([p.ratio for p in pairs]))


@dataclass(frozen=True)
class CheckedPrune:
    """The prune kept by :func:`checked_prune`, every attempt's figures and which was kept.

    ``attempts[i]``: ``search_budget`` (fraction of the predicted original), ``search_s``,
    ``predicted_ms``, and when measured ``original_ms``, ``measured_ms`` and
    ``measured_fraction = measured_ms / original_ms`` (nan when ``checks`` is 0)."""

    result: PruneResult
    attempts: list[dict]
    kept: int


def checked_prune(
    search: Callable[[float], PruneResult],
    measure: Callable[..., tuple[float, float]],
    budget: float,
    search_budget: float,
    checks: int,
    first_aim: float = 0.0,
) -> CheckedPrune:
    """Search (``search(fraction)``, fraction of the predicted original) starting at
    ``search_budget`` (with ``checks > 0``, at ``(1 − first_aim) · search_budget``: a first
    search aimed under the budget's edge leaves room for noise, as a re-search does). With
    ``checks > 0``, measure each result beside the original
    (``measure(model, thresholds=(lo, hi)) -> (original_ms, model_ms)``, e.g.
    :func:`measure_beside`, which may stop as soon as the fraction is clearly inside or
    outside ``[lo, hi] = [1 − BUDGET_UNDER, 1 + BUDGET_OVER] · budget``); while its measured
    fraction of the original lands outside that band, search again (at
    most ``checks`` times) with the search budget expected to measure
    ``(1 − BUDGET_AIM) · budget`` (:func:`next_search_budget`).
    Kept: the slowest attempt within ``(1 + BUDGET_OVER) · budget`` (it pruned least), else
    the fastest. A later search the predictor refuses ends the checks with the earlier
    prunes; a refused first search raises."""
    if not 0 <= first_aim < 1:
        raise InputError(f"first_aim must be in [0, 1), got {first_aim}")
    attempts, results = [], []
    fraction = search_budget * (1 - first_aim) if checks else search_budget
    for _ in range(checks + 1):
        try:
            results.append(search(fraction))
        except InputError as exc:
            if not results:
                raise
            logger.warning("budget check stopped: %s; keeping an earlier prune", exc)
            break
        attempt = {"search_budget": fraction, "search_s": results[-1].search_s,
                   "predicted_ms": results[-1].predicted_latency_ms}  # fmt: skip
        if not checks:
            attempts.append(attempt | {"measured_fraction": float("nan")})
            break
        original_ms, measured_ms = measure(results[-1].model, thresholds=budget_band(budget))
        attempts.append(attempt | {"measured_ms": measured_ms, "original_ms": original_ms,
                                   "measured_fraction": measured_ms / original_ms})  # fmt: skip
        ratio = attempts[-1]["measured_fraction"] / budget
        if 1 - BUDGET_UNDER <= ratio <= 1 + BUDGET_OVER:
            break
        fraction = next_search_budget(attempts, budget * (1 - BUDGET_AIM))
        if not 0 < fraction < 1:
            break
    kept = pick_attempt([a["measured_fraction"] for a in attempts], budget * (1 + BUDGET_OVER))
    return CheckedPrune(results[kept], attempts, kept)


def next_search_budget(attempts: list[dict], goal: float) -> float:
    """The search budget expected to measure the fraction ``goal`` of the original: the
    secant through the last two attempts ``(search_budget, measured_fraction)`` when the
    measured fraction rose with the budget, else the last budget scaled by
    ``goal / measured_fraction``."""
    last = attempts[-1]
    if len(attempts) >= 2:
        prev = attempts[-2]
        slope = (last["measured_fraction"] - prev["measured_fraction"]) / (
            last["search_budget"] - prev["search_budget"]
        )
        if np.isfinite(slope) and slope > 0:
            return last["search_budget"] + (goal - last["measured_fraction"]) / slope
    return last["search_budget"] * goal / last["measured_fraction"]


def pick_attempt(measured: list[float], limit: float) -> int:
    """Index of the slowest attempt measured within ``limit``, else of the fastest (the
    last one when nothing was measured)."""
    within = [i for i, m in enumerate(measured) if m <= limit]
    if within:
        return max(within, key=lambda i: measured[i])
    if all(np.isnan(measured)):
        return len(measured) - 1
    return int(np.nanargmin(measured))
