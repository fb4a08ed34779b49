"""The one timing loop every backend uses.

A backend supplies a *runner*: ``run(number) -> total_ms``, which executes the unit
``number`` times back to back and returns the elapsed wall (or device) time in ms. The loop

1. warms up (``warmup_runs`` calls),
2. picks ``number`` so that one sample lasts at least ``min_sample_ms`` (timer resolution and
   call overhead then stay below a few percent, as in ``timeit.autorange``),
3. collects samples (``total_ms / number``) until the 95% confidence interval of the median
   is within ``±target_rel_ci`` of it (distribution-free, from order statistics), or
   ``max_samples`` or ``max_seconds`` is reached, and
4. re-measures up to ``retries`` times when the spread ``(p90 - p10) / median`` exceeds
   ``unstable_spread``, keeping the steadiest attempt and flagging it ``unstable`` if it is
   still too wide.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

Runner = Callable[[int], float]


@dataclass(frozen=True)
class TimingConfig:
    """Settings of the timing loop (times in ms unless the name says otherwise)."""

    warmup_runs: int = 3
    min_samples: int = 7
    max_samples: int = 200
    max_seconds: float = 1.0
    target_rel_ci: float = 0.02
    min_sample_ms: float = 0.5
    unstable_spread: float = 0.5
    retries: int = 1

    def __post_init__(self) -> None:
        if self.min_samples < 3 or self.max_samples < self.min_samples:
            raise InputError("timing needs 3 <= min_samples <= max_samples")
        if self.max_seconds <= 0 or self.target_rel_ci <= 0 or self.min_sample_ms <= 0:
            raise InputError("timing max_seconds, target_rel_ci and min_sample_ms must be > 0")


@dataclass(frozen=True)
class Timing:
    """Result of one measurement: per-call latency statistics in ms."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples: int
    number: int
    spread: float
    unstable: bool
    wall_s: float


def median_rel_ci(samples: np.ndarray) -> float:
    """Half-width of the ~95% CI of the median relative to it, from order statistics.

    With n sorted samples the ranks ``n/2 ± 0.98·sqrt(n)`` bound the median with ~95%
    probability whatever the distribution.
    """
    x = np.sort(samples)
    n = len(x)
    half = 0.98 * math.sqrt(n)
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half))
    med = float(np.median(x))
    return float((x[hi] - x[lo]) / (2 * med)) if med > 0 else math.inf


def _calibrate_number(run: Runner, min_sample_ms: float) -> int:
    number = 1
    while True:
        total = run(number)
        if total >= min_sample_ms or number >= 1_000_000:
            return number
        factor = min_sample_ms / max(total, 1e-6)
        number = int(min(number * 10, max(number + 1, math.ceil(number * factor * 1.2))))


def _measure_once(run: Runner, config: TimingConfig) -> Timing:
    start = time.perf_counter()
    for _ in range(config.warmup_runs):
        run(1)
    number = _calibrate_number(run, config.min_sample_ms)
    deadline = time.perf_counter() + config.max_seconds
    samples: list[float] = []
    while len(samples) < config.max_samples:
        samples.append(run(number) / number)
        if len(samples) >= config.min_samples and (
            median_rel_ci(np.asarray(samples)) <= config.target_rel_ci
            or time.perf_counter() > deadline
        ):
            break
    arr = np.asarray(samples)
    med = float(np.median(arr))
    p10, p90 = (float(v) for v in np.percentile(arr, [10, 90]))
    spread = (p90 - p10) / med if med > 0 else math.inf
    return Timing(
        median_ms=med,
        p10_ms=p10,
        p90_ms=p90,
        samples=len(arr),
        number=number,
        spread=spread,
        unstable=spread > config.unstable_spread,
        wall_s=time.perf_counter() - start,
    )


def measure(run: Runner, config: TimingConfig | None = None) -> Timing:
    """Time ``run`` with the loop described in the module docstring."""
    config = config or TimingConfig()
    best = _measure_once(run, config)
    for _ in range(config.retries):
        if not best.unstable:
            break
        again = _measure_once(run, config)
        wall = best.wall_s + again.wall_s
        best = again if again.spread < best.spread else best
        best = Timing(**{**best.__dict__, "wall_s": wall})
    return best
