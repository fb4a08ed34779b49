"""Calibrating a latency predictor on measured pruned variants of the model it will price."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..lut import LatencyPredictor
from ..profiler import BackendBase, TimingConfig
from ._apply import apply_plan
from ._groups import channel_groups
from ._random import random_plan

#: Whole-model timing: tighter than the per-unit default, whole models are few.
MODEL_TIMING = TimingConfig(min_samples=15, max_samples=300, max_seconds=3.0, target_rel_ci=0.01)


def calibration_variants(
    model: nn.Module, example_input: torch.Tensor, n_variants: int, seed: int = 0
) -> list[nn.Module]:
    """The model itself plus ``n_variants`` random prunes (overall ratios 0.1-0.7)."""
    groups = channel_groups(model, example_input)
    variants = [model.eval()]
    for i, ratio in enumerate(np.linspace(0.1, 0.7, n_variants)):
        plan = random_plan(model, example_input, groups, float(ratio), seed=seed + 1000 + i)
        variants.append(apply_plan(model, example_input, plan).eval())
    return variants


def calibrate_predictor(
    predictor: LatencyPredictor,
    model: nn.Module,
    example_input: torch.Tensor,
    backend: BackendBase,
    n_variants: int = 6,
    seed: int = 0,
    timing: TimingConfig = MODEL_TIMING,
) -> list[float]:
    """Measure the model and ``n_variants`` random prunes on ``backend``; fit the calibration.

    Returns the measured latencies (ms), the model's first.
    """
    variants = calibration_variants(model, example_input, n_variants, seed)
    measured = [backend.measure_model(v, example_input, timing).median_ms for v in variants]
    predictor.fit_calibration([(v, example_input) for v in variants], measured)
    return measured
