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

:func:`measure_rounds` times many runners in interleaved rounds (round r visits every
runner before round r+1 starts), so a burst of host load lands in one round of many
configurations rather than in every round of one; :func:`combine_rounds` keeps the median
round. With ``reuse_runners`` each runner is built once (an ONNX export and session, say)
and kept for all rounds: steps 1-2 run in the first round only, later rounds warm up with
``round_warmup_runs`` calls and reuse ``number``. With ``settle_rounds``:

* the rounds that agree with the median round within ``target_rel_ci / sqrt(2)`` are
  pooled into one sample set (:func:`combine_rounds`), and
* a runner stops once its remaining rounds cannot move the median round by more than
  ``target_rel_ci / sqrt(2)`` (:func:`rounds_settled`; for 3 rounds: the first two agree)
  and the pooled samples' CI is that narrow too: as precise as two rounds at
  ``target_rel_ci``, about what the median of three such rounds is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from ..errors import InputError

Runner = Callable[[int], float]


@dataclass(frozen=True)
class TimingConfig:
    """Settings of the timing loop (times in ms unless the name says otherwise).

    ``round_warmup_runs``, ``reuse_runners`` and ``settle_rounds`` only concern
    :func:`measure_rounds` (module docstring). ``TimingConfig(min_sample_ms=0.5,
    reuse_runners=False, settle_rounds=False)`` measures as tables were measured before
    these existed: a fresh runner, warm-up and loop sizing in every round, every round to
    ``target_rel_ci``, the median round kept. A 0.25 ms sample keeps a sample's timer and
    Python overhead (~1 µs) below 1%. ``pair_sample_ms`` only concerns
    :func:`measure_paired`: there a sample lasts at least that long, because the first
    calls after the other model ran are slower while caches refill.
    """

    warmup_runs: int = 3
    min_samples: int = 7
    max_samples: int = 200
    max_seconds: float = 1.0
    target_rel_ci: float = 0.02
    min_sample_ms: float = 0.25
    unstable_spread: float = 0.5
    retries: int = 1
    round_warmup_runs: int = 1
    reuse_runners: bool = True
    settle_rounds: bool = True
    pair_sample_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.min_samples < 3 or self.max_samples < self.min_samples:
            raise InputError("timing needs 3 <= min_samples <= max_samples")
        if min(self.max_seconds, self.target_rel_ci, self.min_sample_ms,
               self.pair_sample_ms) <= 0:  # fmt: skip
            raise InputError(
                "timing max_seconds, target_rel_ci, min_sample_ms and pair_sample_ms must be > 0"
            )
        if self.warmup_runs < 0 or self.round_warmup_runs < 0 or self.retries < 0:
            raise InputError("timing warm-up runs and retries must be >= 0")


@dataclass(frozen=True)
class Timing:
    """Result of one measurement: per-call latency statistics in ms.

    ``samples_ms``: the raw samples (ms per call), empty from backends that compute their
    latencies rather than time them.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples: int
    number: int
    spread: float
    unstable: bool
    wall_s: float
    samples_ms: tuple[float, ...] = ()


def median_ci(samples: np.ndarray) -> tuple[float, float]:
    """Bounds of the ~95% CI of the median, from order statistics.

    With n sorted samples the ranks ``n/2 ± 0.98·sqrt(n)`` bound the median with ~95%
    probability whatever the distribution.
    """
    x = np.sort(samples)
    n = len(x)
    half = 0.98 * math.sqrt(n)
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half))
    return float(x[lo]), float(x[hi])


def median_rel_ci(samples: np.ndarray) -> float:
    """Half-width of the ~95% CI of the median (:func:`median_ci`) relative to it."""
    lo, hi = median_ci(samples)
    med = float(np.median(samples))
    return (hi - lo) / (2 * med) if med > 0 else math.inf


def clear_of(low: float, high: float, thresholds: Sequence[float]) -> bool:
    """Whether no threshold lies in ``[low, high]``: every value of that interval falls on
    the same side of each threshold."""
    return not any(low <= t <= high for t in thresholds)


def _loop_count(run: Runner, min_sample_ms: float) -> int:
    number = 1
    while True:
        total = run(number)
        if total >= min_sample_ms or number >= 1_000_000:
            return number
        factor = min_sample_ms / max(total, 1e-6)
        number = int(min(number * 10, max(number + 1, math.ceil(number * factor * 1.2))))


def _sample(run: Runner, number: int, config: TimingConfig, start: float) -> Timing:
    """Step 3: samples of ``number`` calls until the median's CI or a cap is reached."""
    deadline = time.perf_counter() + config.max_seconds
    samples: list[float] = []
    while len(samples) < config.max_samples:
        samples.append(run(number) / number)
        if len(samples) >= config.min_samples and (
            median_rel_ci(np.asarray(samples)) <= config.target_rel_ci
            or time.perf_counter() > deadline
        ):
            break
    return _summary(samples, number, config, time.perf_counter() - start)


def _summary(samples: list[float], number: int, config: TimingConfig, wall_s: float) -> Timing:
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
        wall_s=wall_s,
        samples_ms=tuple(samples),
    )


def _measure_once(run: Runner, config: TimingConfig) -> Timing:
    start = time.perf_counter()
    for _ in range(config.warmup_runs):
        run(1)
    number = _loop_count(run, config.min_sample_ms)
    return _sample(run, number, config, start)


def _resample(run: Runner, number: int, config: TimingConfig) -> Timing:
    """A later round of a runner that is warm and its loop sized: a short warm-up, step 3."""
    start = time.perf_counter()
    for _ in range(config.round_warmup_runs):
        run(1)
    return _sample(run, number, config, start)


def _steadiest(attempt: Callable[[], Timing], config: TimingConfig) -> Timing:
    """Step 4: ``attempt`` again while unstable (up to ``retries``), keep the steadiest."""
    best = attempt()
    for _ in range(config.retries):
        if not best.unstable:
            break
        again = attempt()
        wall = best.wall_s + again.wall_s
        best = again if again.spread < best.spread else best
        best = replace(best, wall_s=wall)
    return best


def measure(run: Runner, config: TimingConfig | None = None) -> Timing:
    """Time ``run`` with the loop described in the module docstring."""
    config = config or TimingConfig()
    return _steadiest(lambda: _measure_once(run, config), config)


@dataclass(frozen=True)
class PairedTiming:
    """Two runners timed in alternation (:func:`measure_paired`).

    ``ratio``: the median over pairs of ``other / reference`` sample latencies;
    ``ratio_rel_ci``: the half-width of its ~95% CI relative to it (0 from backends that
    compute their latencies)."""

    reference: Timing
    other: Timing
    ratio: float
    ratio_rel_ci: float


def measure_paired(
    reference: Runner,
    other: Runner,
    config: TimingConfig | None = None,
    thresholds: Sequence[float] = (),
) -> PairedTiming:
    """Time two runners sample by sample in alternation; the ratio of their latencies.

    Both are warmed up and their loops sized (steps 1-2, a sample lasting at least
    ``pair_sample_ms``); then pair ``i`` takes one sample of each, back to back (in the
    order reference, other for even ``i``, the reverse for odd ``i``), each after
    ``round_warmup_runs`` untimed calls, and contributes ``r_i = other_i / reference_i``.
    Sampling stops when the CI of ``median(r)`` is within ``±target_rel_ci`` or contains
    none of ``thresholds`` (a decision such as "ratio ≤ 0.51" is then made at ~95%
    confidence; at least ``min_samples`` pairs), or at ``max_samples`` pairs or after
    ``max_seconds``. The two samples of a pair lie a few ``pair_sample_ms`` apart, so a
    host slowdown lasting longer than that scales both and cancels in ``r_i``; timing each
    runner in its own block (:func:`measure`) lets it skew the ratio by as much as it
    slows the host.
    """
    config = config or TimingConfig()
    start = time.perf_counter()
    numbers = []
    for run in (reference, other):
        for _ in range(config.warmup_runs):
            run(1)
        numbers.append(_loop_count(run, max(config.min_sample_ms, config.pair_sample_ms)))
    deadline = time.perf_counter() + config.max_seconds
    ref_ms: list[float] = []
    other_ms: list[float] = []

    def sample(run: Runner, number: int) -> float:
        for _ in range(config.round_warmup_runs):  # the other runner left the caches cold
            run(1)
        return run(number) / number

    while len(ref_ms) < config.max_samples:
        if len(ref_ms) % 2 == 0:
            ref_ms.append(sample(reference, numbers[0]))
            other_ms.append(sample(other, numbers[1]))
        else:
            other_ms.append(sample(other, numbers[1]))
            ref_ms.append(sample(reference, numbers[0]))
        if len(ref_ms) >= config.min_samples:
            ratios = np.asarray(other_ms) / np.asarray(ref_ms)
            if (
                median_rel_ci(ratios) <= config.target_rel_ci
                or (thresholds and clear_of(*median_ci(ratios), thresholds))
                or time.perf_counter() > deadline
            ):
                break
    wall = time.perf_counter() - start
    ratios = np.asarray(other_ms) / np.asarray(ref_ms)
    return PairedTiming(
        reference=_summary(ref_ms, numbers[0], config, wall),
        other=_summary(other_ms, numbers[1], config, wall),
        ratio=float(np.median(ratios)),
        ratio_rel_ci=median_rel_ci(ratios),
    )


def _agreeing(timings: Sequence[Timing], tol: float) -> tuple[Timing, list[Timing]]:
    """The median round (lower middle) and the rounds within ``tol`` of it."""
    middle = sorted(timings, key=lambda t: t.median_ms)[(len(timings) - 1) // 2]
    close = [t for t in timings if abs(t.median_ms - middle.median_ms) <= tol * middle.median_ms]
    return middle, close


def _pooled_rel_ci(config: TimingConfig) -> float:
    """The CI of two pooled rounds at ``target_rel_ci``: the agreement that settles rounds."""
    return config.target_rel_ci / math.sqrt(2)


def combine_rounds(timings: Sequence[Timing], config: TimingConfig | None = None) -> Timing:
    """One configuration's rounds as one :class:`Timing`; ``wall_s`` is the total.

    The median round (lower middle for even counts); with ``settle_rounds``, the samples
    of every round within ``target_rel_ci / sqrt(2)`` of it pooled (rounds without raw
    samples, as a computing backend returns, are not pooled).
    """
    config = config or TimingConfig()
    wall = sum(t.wall_s for t in timings)
    middle, close = _agreeing(timings, _pooled_rel_ci(config))
    if not config.settle_rounds or len(close) < 2 or not all(t.samples_ms for t in close):
        return replace(middle, wall_s=wall)
    pooled = [s for t in close for s in t.samples_ms]
    numbers = {t.number for t in close}
    return _summary(pooled, middle.number if len(numbers) > 1 else numbers.pop(), config, wall)


def _median_round_range(values: Sequence[float], rounds: int) -> tuple[float, float] | None:
    """The interval the kept round (the lower middle, rank ``m = (rounds - 1) // 2`` of the
    sorted values) may still take once every round has run: with ``k`` values measured
    (sorted ``v``) and ``u = rounds - k`` to go, whatever the missing ones are, rank m lies
    in ``[v[m - u], v[m]]``. None while the missing rounds could put it anywhere."""
    k, u = len(values), rounds - len(values)
    m = (rounds - 1) // 2
    if m - u < 0 or m >= k:
        return None
    v = sorted(values)
    return v[m - u], v[m]


def rounds_settled(medians: Sequence[float], rounds: int, target_rel_ci: float) -> bool:
    """Whether the rounds still to run cannot move the median round by more than
    ``target_rel_ci`` (relative to it): the interval it may still take
    (:func:`_median_round_range`) is narrower than the target, and the rest are skipped.
    For 3 rounds: the first two agree.
    """
    if len(medians) >= rounds:
        return True
    span = _median_round_range(medians, rounds)
    return span is not None and span[1] > 0 and (span[1] - span[0]) / span[1] <= target_rel_ci


def rounds_decided(values: Sequence[float], rounds: int, thresholds: Sequence[float]) -> bool:
    """Whether the rounds still to run cannot move the median round across any of
    ``thresholds``: the interval it may still take (:func:`_median_round_range`) holds none
    of them. For 3 rounds: the first two fall on the same side of every threshold."""
    if len(values) >= rounds:
        return True
    span = _median_round_range(values, rounds)
    return span is not None and clear_of(*span, thresholds)


def _settled(timings: list[Timing], rounds: int, config: TimingConfig) -> bool:
    """:func:`rounds_settled` and the pooled rounds' CI, both to ``target_rel_ci/sqrt(2)``."""
    tol = _pooled_rel_ci(config)
    if not rounds_settled([t.median_ms for t in timings], rounds, tol):
        return False
    _, close = _agreeing(timings, tol)
    pooled = np.asarray([s for t in close for s in t.samples_ms])
    return len(timings) >= rounds or not pooled.size or median_rel_ci(pooled) <= tol


def measure_rounds(
    factories: Sequence[Callable[[], Runner]],
    config: TimingConfig | None = None,
    rounds: int = 1,
) -> list[list[Timing]]:
    """Time each runner ``factories[i]()`` builds in ``rounds`` interleaved rounds.

    Returns one list per runner with a :class:`Timing` per round it ran (fewer than
    ``rounds`` when settled early); :func:`combine_rounds` makes them one. ``wall_s``
    covers timing, not building runners.
    """
    config = config or TimingConfig()
    if rounds < 1:
        raise InputError(f"rounds must be >= 1, got {rounds}")
    results: list[list[Timing]] = [[] for _ in factories]
    if not config.reuse_runners:
        for _ in range(rounds):
            for i, factory in enumerate(factories):
                results[i].append(measure(factory(), config))
        return results
    runners = [factory() for factory in factories]
    active = list(range(len(runners)))
    for _ in range(rounds):
        if not active:
            break
        for i in active:
            done = results[i]
            if not done:
                done.append(measure(runners[i], config))
            else:
                again = partial(_resample, runners[i], done[0].number, config)
                done.append(_steadiest(again, config))
        if config.settle_rounds:
            active = [i for i in active if not _settled(results[i], rounds, config)]
    return results
