"""The timing loop's steps on scripted runners, each against a hand-worked answer: the
median's confidence interval from order statistics, the calibration of ``number``, the
sampling stop rules, the summary, retries, and how rounds agree and combine."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace

import numpy as np
import pytest

from ttmpd.errors import InputError
from ttmpd.profiler import Timing, TimingConfig
from ttmpd.profiler import _timing as timing


def _timing(median, samples=(), *, spread=0.0, number=1, wall=0.1):
    return Timing(median, median, median, max(len(samples), 7), number, spread, spread > 0.5,
                  wall, tuple(samples))  # fmt: skip


POSITIVE = "max_seconds, target_rel_ci, min_sample_ms and pair_sample_ms must be > 0"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_samples": 2}, "needs 3 <= min_samples <= max_samples"),
        ({"min_samples": 8, "max_samples": 7}, "needs 3 <= min_samples <= max_samples"),
        ({"max_seconds": 0}, POSITIVE),
        ({"target_rel_ci": 0}, POSITIVE),
        ({"min_sample_ms": 0}, POSITIVE),
        ({"pair_sample_ms": 0}, POSITIVE),
        ({"warmup_runs": -1}, "warm-up runs and retries must be >= 0"),
        ({"round_warmup_runs": -1}, "warm-up runs and retries must be >= 0"),
        ({"retries": -1}, "warm-up runs and retries must be >= 0"),
    ],
)
def test_config_bounds_name_the_rule(kwargs, message):
    with pytest.raises(InputError, match=f"^timing {message}$"):
        TimingConfig(**kwargs)


def test_config_boundaries_are_accepted_and_take_effect():
    calls = []

    def run(number):
        calls.append(number)
        return 2.0 * number

    config = TimingConfig(min_samples=3, max_samples=3, warmup_runs=0, retries=0)
    t = timing.measure(run, config)
    assert calls == [1, 1, 1, 1]  # no warm-up: one calibration call, then 3 samples
    assert t.samples == 3


def test_median_ci_from_order_statistics_by_hand():
    # n = 9: ranks 4.5 -+ 0.98 * 3 -> floor(1.56) = 1 and ceil(7.44) = 8 of 1..9, median 5
    x = np.array([9.0, 1, 8, 2, 7, 3, 6, 4, 5])
    assert timing.median_rel_ci(x) == pytest.approx((9 - 2) / (2 * 5))
    # n = 4: the ranks clamp to the ends: (x[3] - x[0]) / (2 * median)
    assert timing.median_rel_ci(np.array([4.0, 1, 2, 3])) == pytest.approx(3 / (2 * 2.5))
    # n = 16: ranks 8 -+ 3.92 -> 4 and 12 of 1..16, median 8.5
    assert timing.median_rel_ci(np.arange(16.0, 0, -1)) == pytest.approx((13 - 5) / 17)
    assert timing.median_rel_ci(np.zeros(5)) == math.inf


def test_calibration_grows_number_by_the_missing_factor_with_margin():
    calls = []

    def run(number):
        calls.append(number)
        return 0.03 * number

    # 1 call: 0.03 ms -> x 10 at most; 10: 0.3 ms -> ceil(10 * 3.33 * 1.2) = 40; 40: 1.2 ms
    assert timing._loop_count(run, 1.0) == 40
    assert calls == [1, 10, 40]
    calls.clear()
    # 1 call: 0.6 ms -> ceil(1 * 1.667 * 1.2) = 2 (at least one more); 2: 1.2 ms
    assert timing._loop_count(lambda n: calls.append(n) or 0.6 * n, 1.0) == 2
    assert calls == [1, 2]
    assert timing._loop_count(lambda n: 1.0 * n, 1.0) == 1  # exactly the minimum


def test_calibration_of_a_free_runner_stops_at_a_million():
    calls = []
    assert timing._loop_count(lambda n: calls.append(n) or 0.0, 1.0) == 1_000_000
    assert calls == [10**i for i in range(7)]


def test_sampling_stops_at_max_samples_when_the_ci_never_narrows():
    noise = itertools.cycle([1.0, 3.0])
    config = TimingConfig(min_samples=3, max_samples=11, max_seconds=60, target_rel_ci=0.01)
    t = timing._sample(lambda n: next(noise) * n, 2, config, start=0.0)
    assert t.samples == 11 and t.number == 2
    assert t.samples_ms == (1.0, 3.0) * 5 + (1.0,)
    assert t.median_ms == 1.0


def test_sampling_stops_at_the_deadline():
    noise = itertools.cycle([1.0, 3.0])
    config = TimingConfig(min_samples=4, max_samples=200, max_seconds=1e-9, target_rel_ci=0.01)
    t = timing._sample(lambda n: next(noise) * n, 1, config, start=0.0)
    assert t.samples == 4  # past the deadline as soon as the minimum is there


def test_sampling_stops_once_the_ci_is_within_target():
    values = iter([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.0, 1.0])
    config = TimingConfig(min_samples=3, max_samples=200, max_seconds=60, target_rel_ci=1e-12)
    # a zero-width CI meets any target: 3 identical samples suffice
    assert timing._sample(lambda n: next(values) * n, 1, config, start=0.0).samples == 3


def test_summary_percentiles_spread_and_flag_by_hand():
    config = TimingConfig(unstable_spread=4 / 3)
    t = timing._summary([float(v) for v in range(11, 0, -1)], 5, config, wall_s=2.5)
    # 1..11: median 6, p10 2, p90 10 -> spread 8 / 6 = 4/3, not above the limit
    assert (t.median_ms, t.p10_ms, t.p90_ms) == (6.0, 2.0, 10.0)
    assert t.spread == pytest.approx(4 / 3) and not t.unstable
    assert (t.samples, t.number, t.wall_s) == (11, 5, 2.5)
    assert timing._summary([1.0, 2.0, 30.0], 1, TimingConfig(), 0.0).unstable
    assert timing._summary([0.0, 0.0, 0.0], 1, TimingConfig(), 0.0).spread == math.inf


def test_steadiest_retries_while_unstable_and_keeps_the_narrowest():
    attempts = iter([_timing(1.0, spread=0.9), _timing(1.1, spread=0.7), _timing(1.2, spread=0.8)])
    best = timing._steadiest(lambda: next(attempts), TimingConfig(retries=2))
    assert best.median_ms == 1.1 and best.spread == 0.7
    assert best.wall_s == pytest.approx(0.3)  # every attempt's time counts
    stable = iter([_timing(1.0, spread=0.1), _timing(2.0, spread=0.0)])
    assert timing._steadiest(lambda: next(stable), TimingConfig(retries=3)).median_ms == 1.0
    attempts = iter([_timing(1.0, spread=0.9), _timing(1.1, spread=0.95)])
    kept = timing._steadiest(lambda: next(attempts), TimingConfig(retries=1))
    assert kept.median_ms == 1.0 and kept.wall_s == pytest.approx(0.2)


def test_measure_warms_up_then_calibrates_then_samples():
    calls = []

    def run(number):
        calls.append(number)
        return 0.5 * number

    config = TimingConfig(warmup_runs=2, min_samples=3, min_sample_ms=1.0, retries=0)
    t = timing.measure(run, config)
    assert calls == [1, 1, 1, 3, 3, 3, 3]  # 2 warm-ups; 1 call 0.5 ms -> 3 calls; 3 samples
    assert t.number == 3 and t.median_ms == pytest.approx(0.5)
    again = []
    t2 = timing._resample(lambda n: again.append(n) or 0.5 * n, 3, config)
    assert again == [1, 3, 3, 3] and t2.median_ms == pytest.approx(0.5)


def test_rounds_must_be_positive():
    with pytest.raises(InputError, match=r"^rounds must be >= 1, got 0$"):
        timing.measure_rounds([lambda: lambda n: 1.0 * n], TimingConfig(), rounds=0)


def test_agreeing_takes_the_lower_middle_and_rounds_within_tolerance():
    rounds = [_timing(m) for m in (8.0, 1.0, 2.5, 4.0, 2.0, 1.5)]
    middle, close = timing._agreeing(rounds, tol=0.25)
    assert middle.median_ms == 2.0  # sorted 1, 1.5, 2, 2.5, 4, 8: index (6 - 1) // 2 = 2
    assert [t.median_ms for t in close] == [2.5, 2.0, 1.5]  # 0.5 off is within 0.25 * 2
    _, close = timing._agreeing(rounds, tol=0.2)
    assert [t.median_ms for t in close] == [2.0]


def test_combined_rounds_keep_the_median_rounds_number():
    rounds = [_timing(1.0, (1.0,) * 7, number=4), _timing(1.001, (1.001,) * 7, number=8)]
    pooled = timing.combine_rounds(rounds, TimingConfig())
    assert pooled.samples == 14 and pooled.number == 4  # numbers differ: the median round's
    same = [_timing(1.0, (1.0,) * 7, number=8), _timing(1.001, (1.001,) * 7, number=8)]
    assert timing.combine_rounds(same, TimingConfig()).number == 8
    one = timing.combine_rounds([rounds[0], _timing(5.0, (5.0,) * 7)], TimingConfig())
    assert one.samples == 7 and one.median_ms == 1.0  # nothing agrees: no pooling
    assert timing.combine_rounds(rounds).samples == 14  # default config settles rounds


def test_rounds_settled_edge_cases():
    assert timing.rounds_settled([1.0, 1.0, 1.0], 3, 0.0)  # every round ran
    assert timing.rounds_settled([1.0, 1.0], 3, 0.0)  # equal medians: nothing can move
    assert not timing.rounds_settled([0.0, 0.0], 3, 0.5)  # no scale to compare against
    # 4 rounds, lower middle rank 1: two measured and two to go cannot bound rank 1
    assert not timing.rounds_settled([1.0, 1.0], 4, 0.5)
    assert timing.rounds_settled([1.0, 1.0, 1.0], 4, 0.0)
    # rank 1 of 4 lies in [v[0], v[1]]: 2% apart settles at 0.02, not below
    assert timing.rounds_settled([1.0, 1.02, 5.0], 4, 0.02 / 1.02 + 1e-12)
    assert not timing.rounds_settled([1.0, 1.02, 5.0], 4, 0.019)


def test_settled_needs_agreeing_medians_and_a_narrow_pooled_ci():
    config = TimingConfig(target_rel_ci=0.02 * math.sqrt(2))  # settling tolerance 0.02
    steady = [_timing(1.0, (1.0,) * 7), _timing(1.0, (1.0,) * 7)]
    assert timing._settled(steady, 3, config)
    wide = [_timing(1.0, (0.5, 1.0, 1.5) * 3), _timing(1.0, (0.5, 1.0, 1.5) * 3)]
    assert not timing._settled(wide, 3, config)  # medians agree, the samples do not
    assert timing._settled(wide, 2, config)  # all rounds ran
    assert timing._settled([_timing(1.0), _timing(1.0)], 3, config)  # nothing to pool
    assert not timing._settled([_timing(1.0), _timing(1.1)], 3, config)


def test_rounds_pool_within_the_target_over_root_two():
    # target 2% -> rounds within 1.414% of the median round (1.0) pool: 1.013 does, 1.02 not
    rounds = [_timing(m, (m,) * 7) for m in (1.0, 1.02, 1.0, 1.013)]
    pooled = timing.combine_rounds(rounds, TimingConfig(target_rel_ci=0.02))
    assert pooled.samples == 21
    assert pooled.samples_ms == (1.0,) * 14 + (1.013,) * 7


def test_unpooled_rounds_report_the_total_wall_time():
    rounds = [_timing(1.0, wall=0.5), _timing(3.0, wall=0.25), _timing(2.0, wall=1.0)]
    kept = timing.combine_rounds(rounds, TimingConfig(settle_rounds=False))
    assert kept.median_ms == 2.0 and kept.wall_s == 1.75


def test_measure_rounds_defaults_to_one_round_with_the_given_config():
    config = TimingConfig(min_samples=3, max_samples=3, warmup_runs=0, retries=0)
    for reuse in (True, False):
        results = timing.measure_rounds(
            [lambda: lambda n: 1.0 * n] * 2, replace(config, reuse_runners=reuse)
        )
        assert [[t.samples for t in r] for r in results] == [[3], [3]]
    results = timing.measure_rounds([lambda: lambda n: 1.0 * n], config, rounds=1)
    assert [len(r) for r in results] == [1]


def test_every_runner_settled_ends_the_rounds_early():
    config = TimingConfig(min_samples=3, max_samples=3, warmup_runs=0, retries=0)
    results = timing.measure_rounds([lambda: lambda n: 1.0 * n] * 2, config, rounds=5)
    # identical rounds: after 3 of 5 the rest cannot move the lower middle
    assert [len(r) for r in results] == [3, 3]


def test_rounds_all_run_are_settled_whatever_their_values():
    assert timing.rounds_settled([0.0, 0.0, 0.0], 3, 0.5)


def test_a_ci_exactly_at_the_target_is_narrow_enough():
    # 0.75, 1, 1.25: ranks clamp to the ends, (1.25 - 0.75) / (2 * 1) = 0.25 exactly
    noise = itertools.cycle([0.75, 1.0, 1.25])
    config = TimingConfig(min_samples=3, max_samples=9, max_seconds=60, target_rel_ci=0.25)
    assert timing._sample(lambda n: next(noise) * n, 1, config, start=0.0).samples == 3
    # two such rounds pooled: 6 samples, CI again 0.25, the settling tolerance here
    rounds = [_timing(1.0, (0.75, 1.0, 1.25)), _timing(1.0, (0.75, 1.0, 1.25))]
    assert timing._settled(rounds, 3, TimingConfig(target_rel_ci=0.25 * math.sqrt(2)))


def test_sampling_wall_time_is_measured_from_the_start():
    config = TimingConfig(min_samples=3, max_samples=3)
    before = time.perf_counter()
    start = before - 5.0  # warm-up and loop sizing began 5 s earlier: they count too
    t = timing._sample(lambda n: 1.0 * n, 1, config, start=start)
    assert 5.0 <= t.wall_s <= time.perf_counter() - start


def test_later_rounds_may_skip_the_warm_up():
    calls = []
    config = TimingConfig(round_warmup_runs=0, min_samples=3, max_samples=3)
    timing._resample(lambda n: calls.append(n) or 0.5 * n, 4, config)
    assert calls == [4, 4, 4]


def test_a_retry_as_unsteady_as_the_first_attempt_does_not_replace_it():
    attempts = iter([_timing(1.0, spread=0.9), _timing(2.0, spread=0.9)])
    kept = timing._steadiest(lambda: next(attempts), TimingConfig(retries=1))
    assert kept.median_ms == 1.0
