"""Calibrating a latency predictor on measured pruned variants of the model it will price."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InputError
from ..lut import LatencyPredictor
from ..profiler import BackendBase, TimingConfig
from ._apply import apply_plan
from ._groups import channel_groups
from ._random import random_plan

logger = logging.getLogger(__name__)

#: The calibration's worst leave-one-out error beyond which it is measured again (when
#: asked for more tries) and a warning says so: the predictor's ±10% goal.
MAX_LOO = 0.10

#: Whole-model timing: tighter than the per-unit default, whole models are few.
MODEL_TIMING = TimingConfig(min_samples=15, max_samples=300, max_seconds=3.0, target_rel_ci=0.01)


def calibration_variants(
    model: nn.Module,
    example_input: torch.Tensor,
    n_variants: int,
    seed: int = 0,
    round_to: int | None = None,
) -> list[nn.Module]:
    """The model itself plus ``n_variants`` random prunes, overall ratios evenly in 0.1-0.8.

    The range matches what a search to a latency budget of 0.3 explores; heavy prunes,
    where the per-call overhead every isolated unit pays dominates the unit sum, need to be
    in the fit (docs/design/measurement.md). With ``round_to``, every other prune (the
    first, third, ...) keeps channel counts in multiples of it: searches return prunes
    aligned to the device's fast kernels, and a calibration on unaligned prunes alone
    mis-prices them (docs/design/search.md). A ratio the alignment cannot reach is pruned
    unaligned.
    """
    groups = channel_groups(model, example_input)
    variants = [model.eval()]
    for i, ratio in enumerate(np.linspace(0.1, 0.8, n_variants)):
        step = round_to if i % 2 == 0 else None
        try:
            plan = random_plan(model, example_input, groups, float(ratio), seed=seed + 1000 + i,
                               round_to=step)  # fmt: skip
        except InputError:  # above what pruning in multiples of round_to can remove
            plan = random_plan(model, example_input, groups, float(ratio), seed=seed + 1000 + i)
        variants.append(apply_plan(model, example_input, plan).eval())
    return variants


def calibration_round_to(predictor: LatencyPredictor) -> int | None:
    """The channel multiple the device's probed blocked-layout rule runs fast
    (``in_multiple``), when the predictor prices with one; else None."""
    rule = predictor.rules_.blocked if predictor.blocked_layout_ else None
    return None if rule is None else int(rule.in_multiple)


def measure_models(
    models: Sequence[tuple[nn.Module, torch.Tensor]],
    backend: BackendBase,
    rounds: int = 3,
    timing: TimingConfig = MODEL_TIMING,
    progress: bool = False,
    desc: str = "measure",
) -> list[float]:
    """Median latency (ms) of each model over ``rounds`` interleaved measurements.

    Round r measures every model once before round r+1 starts, so a burst of load on a
    shared host lands on one round of several models, not on every round of one model, and
    the median discards it.
    """
    if rounds < 1:
        raise InputError(f"rounds must be >= 1, got {rounds}")
    samples = []
    with tqdm(total=rounds * len(models), desc=desc, unit="model", leave=False,
              disable=None if progress else True) as bar:  # fmt: skip
        for _ in range(rounds):
            row = []
            for m, x in models:
                row.append(backend.measure_model(m, x, timing).median_ms)
                bar.update(1)
            samples.append(row)
    return [float(v) for v in np.median(np.asarray(samples), axis=0)]


def calibrate_predictor(
    predictor: LatencyPredictor,
    model: nn.Module,
    example_input: torch.Tensor,
    backend: BackendBase,
    n_variants: int = 6,
    seed: int = 0,
    timing: TimingConfig = MODEL_TIMING,
    rounds: int = 3,
    progress: bool = False,
    tries: int = 1,
    max_loo: float = MAX_LOO,
) -> list[float]:
    """Measure the model and ``n_variants`` random prunes on ``backend``; fit the calibration.

    Each model's latency is the median of ``rounds`` interleaved measurements
    (:func:`measure_models`). Returns the measured latencies (ms), the model's first.
    ``progress`` shows a bar with an ETA (on a terminal).

    While the worst leave-one-out error (``predictor.calibration_loo_``) exceeds
    ``max_loo``, the same models are measured again, up to ``tries`` measurements in all,
    and the steadiest (smallest worst error) is kept: a host whose speed drifted while
    measuring gives a calibration that contradicts itself. If the kept one still exceeds
    ``max_loo``, a warning says so (drift, or a device rule the predictor lacks).
    """
    if tries < 1:
        raise InputError(f"tries must be >= 1, got {tries}")
    variants = calibration_variants(
        model, example_input, n_variants, seed, calibration_round_to(predictor)
    )
    pairs = [(v, example_input) for v in variants]
    kept: tuple[float, list[float]] | None = None
    for _ in range(tries):
        measured = measure_models(pairs, backend, rounds, timing, progress, desc="calibrate")
        predictor.fit_calibration(pairs, measured)
        worst = predictor.calibration_loo_worst
        if kept is None or worst < kept[0]:
            kept = (worst, measured)
        if worst <= max_loo:
            break
    worst, measured = kept
    predictor.fit_calibration(pairs, measured)
    if worst > max_loo:
        logger.warning("calibration: worst leave-one-out error %.0f%% (over %.0f%%) after %d "
                       "measurement(s); predictions of unmeasured prunes may miss by as much "
                       "(the host's speed drifted while measuring, or the device has a rule "
                       "the predictor lacks): measure the result", 100 * worst, 100 * max_loo,
                       tries)  # fmt: skip
    return measured
