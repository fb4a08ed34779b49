import itertools

import numpy as np
import pytest

from ttmpd.errors import InputError
from ttmpd.profiler import Timing, TimingConfig, measure
from ttmpd.profiler._timing import combine_rounds, measure_rounds, median_rel_ci, rounds_settled


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


# ----- interleaved rounds --------------------------------------------------------------------
class Scripted:
    """A runner factory: each call builds a runner; the runner's per-call latency is
    ``level(round)`` ms, where a round starts with the first call after a calibrated
    sample of the previous round (a warm-up run, ``number == 1``)."""

    def __init__(self, levels, log):
        self.levels, self.log, self.built = list(levels), log, 0

    def __call__(self):
        self.built += 1
        state = {"round": -1, "sampling": True}

        def run(number):
            if number == 1 and state["sampling"]:  # the warm-up that opens a round
                state["round"] += 1
            state["sampling"] = number > 1
            self.log.append((id(self), state["round"], number))
            level = self.levels[min(state["round"], len(self.levels) - 1)]
            return level * number

        return run


def _config(**kw):
    return TimingConfig(min_samples=5, min_sample_ms=1.0, warmup_runs=2, **kw)


def test_reused_runners_are_built_once_and_calibrated_once():
    log = []
    factories = [Scripted([0.25, 0.25, 0.25], log), Scripted([0.1] * 3, log)]
    config = _config(settle_rounds=False)
    results = measure_rounds(factories, config, rounds=3)
    assert [f.built for f in factories] == [1, 1]
    assert [len(r) for r in results] == [3, 3]
    assert [t.median_ms for t in results[0]] == pytest.approx([0.25] * 3)
    assert {t.number for t in results[0]} == {5} and {t.number for t in results[1]} == {10}
    # rounds interleave: both runners finish round r before either starts round r + 1
    rounds = [r for _, r, _ in log]
    assert rounds == sorted(rounds)
    # later rounds: one warm-up run each, no calibration (every other call is a sample)
    later = [n for f, r, n in log if f == id(factories[0]) and r == 1]
    assert later[0] == 1 and set(later[1:]) == {5}


def test_without_reuse_every_round_builds_and_calibrates_afresh():
    log = []
    factories = [Scripted([0.25], log), Scripted([0.1], log)]
    results = measure_rounds(factories, _config(reuse_runners=False), rounds=3)
    assert [f.built for f in factories] == [3, 3]
    assert [len(r) for r in results] == [3, 3]


def test_agreeing_rounds_settle_and_a_burst_takes_another_round():
    steady, burst = Scripted([0.25, 0.25, 0.25], []), Scripted([0.25, 2.5, 0.252], [])
    results = measure_rounds([steady, burst], _config(), rounds=3)
    assert len(results[0]) == 2  # round 3 could not move the median round
    assert len(results[1]) == 3
    kept = combine_rounds(results[1], _config())
    assert kept.median_ms == pytest.approx(0.251)  # the burst round is left out
    assert kept.samples == results[1][0].samples + results[1][2].samples  # pooled


def test_combining_without_settling_keeps_the_median_round():
    rounds = [_timing(1.0, (1.0,) * 7), _timing(10.0, (10.0,) * 7), _timing(1.01, (1.01,) * 7)]
    assert combine_rounds(rounds, _config(settle_rounds=False)).median_ms == 1.01
    pooled = combine_rounds(rounds, _config())
    assert pooled.samples == 14 and pooled.median_ms == pytest.approx(1.005)
    assert pooled.wall_s == pytest.approx(3 * 0.1)
    # timings without raw samples (a computing backend) are never pooled
    bare = [_timing(1.0, ()), _timing(10.0, ()), _timing(1.01, ())]
    assert combine_rounds(bare, _config()).median_ms == 1.01


def _timing(median, samples):
    return Timing(median, median, median, max(len(samples), 7), 1, 0.0, False, 0.1, samples)


@pytest.mark.parametrize(
    ("medians", "rounds", "settled"),
    [
        ([1.0], 3, False),  # one round says nothing about the next two
        ([1.0, 1.01], 3, True),  # the median of 3 lies between the first two
        ([1.0, 1.05], 3, False),
        ([1.0, 1.0], 2, True),  # all rounds ran
        ([1.0], 2, False),
        ([1.0, 1.01, 1.015], 5, True),  # rank 2 of 5 lies in [v0, v2]
        ([1.0, 1.01, 1.2], 5, False),
        ([1.0, 1.01], 5, False),
    ],
)
def test_rounds_settle_only_when_the_rest_cannot_move_the_median(medians, rounds, settled):
    assert rounds_settled(medians, rounds, 0.02) is settled


def test_settled_rounds_bound_the_median_of_all_rounds():
    """Against brute force: whatever the skipped rounds would have measured, the median
    round moves by at most the target from a round already measured."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        rounds = int(rng.integers(2, 7))
        k = int(rng.integers(1, rounds))
        done = list(1 + 0.03 * rng.standard_normal(k))
        if not rounds_settled(done, rounds, 0.02):
            continue
        for rest in (np.full(rounds - k, 0.1), np.full(rounds - k, 10.0), rng.random(rounds - k)):
            final = sorted([*done, *rest])[(rounds - 1) // 2]
            assert min(abs(final / d - 1) for d in done) <= 0.02 + 1e-12
