import itertools

import numpy as np
import pytest

from ttmpd.errors import InputError
from ttmpd.profiler import TimingConfig, measure
from ttmpd.profiler._timing import median_rel_ci


def test_constant_runner_stops_at_min_samples():
    calls = []

    def run(number):
        calls.append(number)
        return 0.25 * number

    t = measure(run, TimingConfig(min_samples=5, min_sample_ms=1.0))
    assert t.median_ms == pytest.approx(0.25)
    assert t.p10_ms == t.p90_ms == pytest.approx(0.25)
    assert t.samples == 5 and t.number * 0.25 >= 1.0 and not t.unstable and t.spread == 0


def test_fast_units_are_batched_to_reach_the_minimum_sample_time():
    t = measure(lambda n: 0.001 * n, TimingConfig(min_sample_ms=0.5))
    assert t.number * 0.001 >= 0.5
    assert t.median_ms == pytest.approx(0.001)


def test_unstable_measurements_are_retried_then_flagged():
    noise = itertools.cycle([1.0, 1.0, 5.0, 0.2, 1.0, 9.0, 0.1])
    calls = {"n": 0}

    def run(number):
        calls["n"] += 1
        return next(noise) * number

    config = TimingConfig(min_samples=7, max_samples=14, retries=1, unstable_spread=0.5)
    t = measure(run, config)
    assert t.unstable and t.spread > 0.5
    assert calls["n"] > 2 * (config.warmup_runs + config.min_samples)  # measured twice


def test_median_ci_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    few = median_rel_ci(1 + 0.1 * rng.standard_normal(10))
    many = median_rel_ci(1 + 0.1 * rng.standard_normal(1000))
    assert many < few


def test_bad_timing_config():
    with pytest.raises(InputError):
        TimingConfig(min_samples=2)
    with pytest.raises(InputError):
        TimingConfig(max_seconds=0)
