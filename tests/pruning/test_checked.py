"""checked_prune: search on predicted latency, measure, search again on a miss."""

from __future__ import annotations

from dataclasses import replace

import pytest
from torch import nn

from ttmpd.errors import InputError
from ttmpd.profiler import PairedTiming, Timing
from ttmpd.pruning import MODEL_TIMING, PruneResult, checked_prune, measure_beside
from ttmpd.pruning._checked import next_search_budget, pick_attempt


def fake_search(device_factory):
    """A search whose result 'measures' ``device_factory(fraction)`` of the original."""
    calls = []

    def search(fraction):
        calls.append(fraction)
        model = nn.Identity()
        model.measured_fraction = device_factory(fraction)
        return PruneResult(plan=None, model=model, log=None, base_latency_ms=1.0,
                           predicted_latency_ms=fraction, target_latency_ms=fraction,
                           method="fake", search_s=0.1)  # fmt: skip

    return search, calls


def measure(model, thresholds=()):
    assert thresholds == pytest.approx((0.5 * 0.9, 0.5 * 1.02))  # the budget band's edges
    return 2.0, 2.0 * model.measured_fraction


def test_a_prune_measured_within_the_band_is_kept_without_searching_again():
    search, calls = fake_search(lambda f: f * 1.01)
    checked = checked_prune(search, measure, budget=0.5, search_budget=0.5, checks=2)
    assert calls == [0.5]
    assert checked.kept == 0
    assert checked.attempts[0]["measured_fraction"] == pytest.approx(0.505)


def test_a_device_slower_than_priced_is_searched_again_below_the_budget():
    # the device runs every prune 10% slower than priced: the first misses by 10%
    search, calls = fake_search(lambda f: 1.1 * f)
    checked = checked_prune(search, measure, budget=0.5, search_budget=0.5, checks=2)
    assert len(calls) == 2
    assert calls[1] == pytest.approx(0.5 * 0.97 * 0.5 / 0.55)
    assert checked.kept == 1
    assert checked.attempts[1]["measured_fraction"] <= 0.5 * 1.02
    assert checked.result.predicted_latency_ms == pytest.approx(calls[1])


def test_a_first_aim_starts_under_the_budget_only_when_the_prune_is_checked():
    # noise of +2% puts a prune searched at the budget over the band's edge (1.02); aimed
    # 3% under, the first search lands inside and no re-search is needed
    search, calls = fake_search(lambda f: 1.025 * f)
    checked_prune(search, measure, budget=0.5, search_budget=0.5, checks=2)
    assert len(calls) == 2  # at the budget: missed over the band, searched again
    search, calls = fake_search(lambda f: 1.025 * f)
    aimed = checked_prune(search, measure, budget=0.5, search_budget=0.5, checks=2,
                          first_aim=0.03)  # fmt: skip
    assert calls == [pytest.approx(0.485)] and aimed.kept == 0
    search, calls = fake_search(lambda f: f)
    checked_prune(search, measure, budget=0.5, search_budget=0.5, checks=0, first_aim=0.03)
    assert calls == [0.5]  # unchecked: nothing to leave room for
    with pytest.raises(InputError, match="first_aim"):
        checked_prune(search, measure, budget=0.5, search_budget=0.5, checks=2, first_aim=1.0)


def test_no_checks_measures_nothing():
    search, _ = fake_search(lambda f: 3 * f)

    def refuse(model):
        raise AssertionError("measured with checks=0")

    checked = checked_prune(search, refuse, budget=0.5, search_budget=0.4, checks=0)
    assert checked.kept == 0 and len(checked.attempts) == 1


def test_a_refused_later_search_keeps_the_earlier_prune_and_a_refused_first_raises():
    search, calls = fake_search(lambda f: 2 * f)

    def refusing(fraction):
        if calls:
            raise InputError("below the floor")
        return search(fraction)

    checked = checked_prune(refusing, measure, budget=0.5, search_budget=0.5, checks=2)
    assert checked.kept == 0 and len(checked.attempts) == 1
    with pytest.raises(InputError):
        checked_prune(refusing, measure, budget=0.5, search_budget=0.5, checks=2)


def test_budget_check_keeps_the_slowest_prune_within_the_limit():
    assert pick_attempt([1.3, 0.9, 0.7], limit=1.0) == 1
    assert pick_attempt([1.3, 1.2], limit=1.0) == 1  # none within: the fastest
    assert pick_attempt([float("nan")], limit=1.0) == 0  # --budget-checks 0


def test_next_search_budget_scales_then_follows_the_secant():
    one = [{"search_budget": 0.5, "measured_fraction": 0.8}]
    assert next_search_budget(one, goal=0.4) == pytest.approx(0.25)
    # measured falls 0.2 per 0.1 of budget: the secant lands on the goal
    two = [*one, {"search_budget": 0.4, "measured_fraction": 0.6}]
    assert next_search_budget(two, goal=0.4) == pytest.approx(0.3)
    # measured did not respond to the budget (noise): fall back to scaling
    flat = [*one, {"search_budget": 0.4, "measured_fraction": 0.8}]
    assert next_search_budget(flat, goal=0.4) == pytest.approx(0.2)


class ScriptedDevice:
    """``measure_paired`` returns the scripted ratios in turn (original at 2 ms)."""

    def __init__(self, ratios):
        self.ratios, self.calls = list(ratios), 0

    def measure_paired(self, original, model, example_input, timing, thresholds=()):
        def timing_of(ms):
            return Timing(ms, ms, ms, 1, 1, 0.0, False, 0.0)

        ratio = self.ratios[self.calls]
        self.calls += 1
        return PairedTiming(timing_of(2.0), timing_of(2.0 * ratio), ratio, 0.0)


@pytest.mark.parametrize(
    ("ratios", "rounds_run", "fraction"),
    [
        ([0.50, 0.503, 0.9], 2, 0.5015),  # two rounds agree within 1%: the third cannot move it
        ([0.50, 0.60, 0.55], 3, 0.55),  # they disagree: the third decides
        ([0.50, 0.52, 0.51], 3, 0.51),  # 4% apart is no agreement at a 1% target
    ],
)
def test_measure_beside_stops_once_the_rounds_agree(ratios, rounds_run, fraction):
    device = ScriptedDevice(ratios)
    original_ms, model_ms = measure_beside(nn.Identity(), nn.Identity(), None, device, 3,
                                           replace(MODEL_TIMING, target_rel_ci=0.01))  # fmt: skip
    assert device.calls == rounds_run
    assert original_ms == 2.0 and model_ms / original_ms == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("ratios", "rounds_run", "fraction"),
    [
        ([0.48, 0.495, 0.9], 2, 0.4875),  # both inside the band [0.45, 0.51]: decided
        ([0.53, 0.56, 0.1], 2, 0.545),  # both above it: decided, a re-search follows
        ([0.50, 0.52, 0.49], 3, 0.50),  # on either side of 0.51: the third decides
    ],
)
def test_measure_beside_stops_once_the_rounds_decide_against_the_thresholds(
    ratios, rounds_run, fraction
):
    device = ScriptedDevice(ratios)
    original_ms, model_ms = measure_beside(nn.Identity(), nn.Identity(), None, device, 3,
                                           replace(MODEL_TIMING, target_rel_ci=0.001),
                                           thresholds=(0.45, 0.51))  # fmt: skip
    assert device.calls == rounds_run
    assert model_ms / original_ms == pytest.approx(fraction)
