"""The whole-model calibration with hand-worked answers: tiny conv chains whose every unit is
in a hand-made table (exact hits), so each model's unit sums are known without the
predictor, and ``fit_calibration`` must recover the slopes, per-unit cost and offset the
"measured" totals were built from. Fast: a ridge regressor, no profiling."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from ttmpd.errors import InputError
from ttmpd.lut import (
    LatencyPredictor,
    LatencyTable,
    _predictor,
    configs_frame,
    unit_work,
    work_offset,
)
from ttmpd.lut._features import FEATURE_NAMES, blocked_layout_mask
from ttmpd.lut._schema import LutMeta
from ttmpd.profiler import (
    BlockedLayoutRule,
    DeviceRules,
    NativeConvRule,
    extract_units,
    get_backend,
)

HW = 8
T0 = 0.04  #: the probed per-call overhead of the hand-made device (ms)
#: native (torch's slow path) iff in_channels * 8 * 8 <= 256, i.e. in_channels <= 4
NATIVE = NativeConvRule(max_input_elements=256, max_kernel=3, max_batch=1,
                        pointwise_max_batch=0, pointwise_max_threads=0)  # fmt: skip


def chain(*channels: int, relu: bool = False) -> tuple[nn.Module, torch.Tensor]:
    """3x3 convs ``channels[0] -> channels[1] -> ...`` on an 8x8 input: one unit each (with
    ``relu``, a ReLU after each, which the ``conv-bn-add-act`` fusion folds into its conv)."""
    layers = []
    for i, o in pairwise(channels):
        layers += [nn.Conv2d(i, o, 3, padding=1, bias=False)] + [nn.ReLU()] * relu
    return nn.Sequential(*layers).eval(), torch.zeros(1, channels[0], HW, HW)


def conv_ms(i: int, o: int) -> float:
    """The hand-made device: a conv ``i -> o`` costs 0.05 ms + 1 µs per channel pair."""
    return 0.05 + 0.001 * i * o


def sums(*channels: int) -> tuple[float, float, int]:
    """(Σ other, Σ native, n_units) of a chain, each unit without the overhead ``T0``."""
    pairs = list(pairwise(channels))
    other = sum(conv_ms(i, o) - T0 for i, o in pairs if i > 4)
    native = sum(conv_ms(i, o) - T0 for i, o in pairs if i <= 4)
    return other, native, len(pairs)


def table(
    chains,
    rules: DeviceRules | None = None,
    threads: int = 1,
    fusion: str = "none",
    per_out_channel_ms: float = 0.0,
) -> LatencyTable:
    """A table holding every unit of ``chains`` (plus filler rows) at :func:`conv_ms`, plus
    ``per_out_channel_ms`` per output channel; with the ``conv-bn-add-act`` fusion, the
    units of the chains with ReLUs."""
    fills = [(8, 8, 8, 8), (16, 16, 16), (2, 2, 2)]
    relu = fusion != "none"
    configs = {u.config.key: u.config for c in [*chains, *fills]
               for u in extract_units(*chain(*c, relu=relu), fusion).units}  # fmt: skip
    frame = configs_frame(list(configs.values()))
    y = 0.05 + 0.001 * frame["in_channels"] * frame["out_channels"]
    y = y + per_out_channel_ms * frame["out_channels"]
    rows = frame.assign(latency_ms=y, p10_ms=y, p90_ms=y, samples=7, spread=0.0,
                        unstable=False, measured_at="")  # fmt: skip
    rules = rules or DeviceRules(native=NATIVE, call_overhead_ms=T0)
    fingerprint = replace(get_backend("fake").fingerprint(), threads=threads)
    meta = LutMeta(fingerprint=fingerprint, rules=rules.to_dict(), fusion=fusion)
    return LatencyTable(rows, meta)


# unit counts 3, 4, 2, 5; native shares about 0.3, 0.2, 0, 0.1
MIXED = [(3, 4, 8, 8), (8, 4, 4, 16, 8), (16, 8, 8), (2, 2, 12, 6, 6, 2)]
# three units each; native shares vary from 0 to about 0.6
SAME_COUNT = [(3, 4, 8, 8), (8, 4, 4, 8), (8, 8, 16, 4), (2, 16, 16, 16)]


def calibrated(chains, measured, **kwargs) -> LatencyPredictor:
    p = LatencyPredictor("ridge", native_conv_slope=True, **kwargs).fit(table(chains))
    return p.fit_calibration([chain(*c) for c in chains], measured)


def test_the_hand_made_device_has_native_and_other_units():
    p = LatencyPredictor("ridge").fit(table(MIXED))
    assert p.native_conv_slope_ and p.unit_overhead_ms_ == T0
    frame = configs_frame([u.config for u in extract_units(*chain(*MIXED[0])).units])
    assert p.hit_mask(frame).all()
    assert p.unit_slopes(frame).tolist() == [1.0, 1.0, 1.0]  # identity before calibration
    assert p.predict(frame).tolist() == [conv_ms(3, 4), conv_ms(4, 8), conv_ms(8, 8)]


def test_four_models_give_both_slopes_the_per_unit_cost_and_the_offset():
    parts = np.array([sums(*c) for c in MIXED])
    measured = 1.2 * parts[:, 0] + 0.7 * parts[:, 1] + 0.03 * parts[:, 2] + 0.1
    p = calibrated(MIXED, measured)
    assert p.call_overhead_ms_ == T0
    assert p.calibration_ == pytest.approx((1.2, 0.03, 0.1), rel=1e-6)
    assert p.second_slope_ == pytest.approx(0.7, rel=1e-6)
    model, x = chain(*MIXED[0])
    frame = configs_frame([u.config for u in extract_units(model, x).units])
    assert p.unit_slopes(frame) == pytest.approx([0.7, 0.7, 1.2])  # 3->4, 4->8 native
    latency = [conv_ms(3, 4), conv_ms(4, 8), conv_ms(8, 8)]
    assert p.scaled_units(frame) == pytest.approx(p.unit_slopes(frame) * (np.array(latency) - T0))
    whole = p.predict_model(model, x)
    assert whole.total_ms == pytest.approx(measured[0], rel=1e-6)
    assert whole.unit_sum_ms == pytest.approx(sum(latency), rel=1e-12)
    plain = p.predict_model(model, x, calibrated=False)
    assert plain.total_ms == plain.unit_sum_ms == pytest.approx(sum(latency), rel=1e-12)
    stacked = configs_frame(
        [u.config for c in MIXED[:1] * 2 for u in extract_units(*chain(*c)).units]
    )
    assert p.calibrated_totals(stacked, 2) == pytest.approx([measured[0]] * 2, rel=1e-6)
    assert p.calibrated_totals(frame) == pytest.approx([measured[0]], rel=1e-6)  # one model


def test_a_single_slope_below_four_models():
    chains = [MIXED[0], MIXED[1], MIXED[3]]
    parts = np.array([sums(*c) for c in chains])
    measured = 1.2 * (parts[:, 0] + parts[:, 1]) + 0.03 * parts[:, 2] + 0.1
    p = calibrated(chains, measured)
    assert p.calibration_ == pytest.approx((1.2, 0.03, 0.1), rel=1e-6)
    assert p.second_slope_ == p.calibration_[0]


def test_no_per_unit_cost_when_every_model_has_the_same_unit_count():
    parts = np.array([sums(*c) for c in SAME_COUNT])
    assert (parts[:, 2] == 3).all()
    measured = 1.1 * parts[:, 0] + 0.6 * parts[:, 1] + 0.2
    p = calibrated(SAME_COUNT, measured)
    a, b, c = p.calibration_
    assert b == 0.0 and (a, c) == pytest.approx((1.1, 0.2), rel=1e-6)
    assert p.second_slope_ == pytest.approx(0.6, rel=1e-6)


@pytest.mark.parametrize("n", [1, 2])
def test_only_the_slope_below_three_models(n):
    chains = MIXED[:n]
    total = np.array([sum(sums(*c)[:2]) for c in chains])
    measured = 1.5 * total + np.array([0.1, 0.3])[:n]  # no slope fits both exactly
    p = calibrated(chains, measured)
    r = total / measured  # least squares on relative residuals: a = Σ r / Σ r²
    assert p.calibration_[1:] == (0.0, 0.0)
    assert p.calibration_[0] == pytest.approx(r.sum() / (r**2).sum(), rel=1e-6)
    assert p.second_slope_ == p.calibration_[0]


def two_slope_data(chains) -> np.ndarray:
    parts = np.array([sums(*c) for c in chains])
    return 1.0 * parts[:, 0] + 2.0 * parts[:, 1] + 0.05 * parts[:, 2] + 0.1


def test_one_slope_when_a_model_lacks_second_slope_units_and_the_share_barely_varies():
    # shares 0, 0.047, 0, 0: the data cannot tell a native slope from the other
    chains = [(16, 32, 32), (2, 24, 24, 24), (16, 32, 32, 16), (16, 16, 32)]
    other, native, _ = sums(*chains[1])
    assert 0.045 < native / (other + native) < 0.05
    p = calibrated(chains, two_slope_data(chains))
    assert p.second_slope_ == p.calibration_[0]


def test_two_slopes_when_the_share_varies_by_more_than_five_points():
    # shares 0, 0.35, 0, 0.21 of model sums below 1 ms (native sums below 0.05 ms)
    chains = [(16, 8, 8), (2, 2, 8, 8), (8, 8, 8, 8), (8, 2, 8, 8)]
    p = calibrated(chains, two_slope_data(chains))
    assert (p.calibration_[0], p.second_slope_) == pytest.approx((1.0, 2.0), rel=1e-5)


def test_two_slopes_when_every_model_has_second_slope_units():
    # shares 0.041 to 0.060: little spread, but every model tells a4 from a a little
    chains = [(2, 24, 24, 32), (3, 8, 32, 16), (2, 16, 16, 32), (2, 16, 16, 24)]
    p = calibrated(chains, two_slope_data(chains))
    a, b, c = p.calibration_
    assert (a, p.second_slope_, c) == pytest.approx((1.0, 2.0, 0.25), rel=1e-4)  # 3 units
    assert b == 0.0


def test_one_slope_when_a_model_has_only_second_slope_units():
    chains = [*MIXED[:3], (2, 2, 4, 4)]  # every unit native: no "other" sum to scale
    parts = np.array([sums(*c) for c in chains])
    assert parts[3, 0] == 0
    measured = 1.2 * (parts[:, 0] + parts[:, 1]) + 0.03 * parts[:, 2] + 0.1
    p = calibrated(chains, measured)
    assert p.calibration_ == pytest.approx((1.2, 0.03, 0.1), rel=1e-6)
    assert p.second_slope_ == p.calibration_[0]


def test_the_offset_stops_at_minus_half_the_fastest_model():
    chains = SAME_COUNT[:3]
    total = np.array([sum(sums(*c)[:2]) for c in chains])
    measured = total - 0.5 * total.min()  # the best offset, -S_min/2, lies below the bound
    p = calibrated(chains, measured)
    assert p.calibration_[2] == pytest.approx(-0.5 * measured.min(), rel=1e-6)
    assert p.calibration_[1] == 0.0


def test_the_per_unit_cost_is_not_negative():
    chains = [MIXED[0], MIXED[1], MIXED[3]]
    parts = np.array([sums(*c) for c in chains])
    measured = 1.0 * (parts[:, 0] + parts[:, 1]) - 0.01 * parts[:, 2] + 0.5
    p = calibrated(chains, measured)
    assert p.calibration_[1] == pytest.approx(0.0, abs=1e-9)
    exact = calibrated(chains, measured + 0.02 * parts[:, 2])  # +0.01 per unit: in bounds
    assert exact.calibration_ == pytest.approx((1.0, 0.01, 0.5), rel=1e-6)


@pytest.mark.parametrize(
    ("models", "measured", "message"),
    [
        ([], [], r"fit_calibration needs one measured latency per model \(>= 1\)"),
        ([chain(3, 4)], [1.0, 2.0], r"fit_calibration needs one measured latency per model"),
        ([chain(3, 4)], [-1.0], "measured latencies must be positive and finite"),
        ([chain(3, 4)], [0.0], "measured latencies must be positive and finite"),
        ([chain(3, 4)], [np.nan], "measured latencies must be positive and finite"),
        ([chain(3, 4)], [None], "measured latencies must be positive and finite"),  # missing
    ],
)
def test_fit_calibration_rejects_bad_input(models, measured, message):
    p = LatencyPredictor("ridge").fit(table(MIXED))
    with pytest.raises(InputError, match=f"^{message}"):
        p.fit_calibration(models, measured)
    assert p.calibration_ == (1.0, 0.0, 0.0) and p.call_overhead_ms_ == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.predict([]),
        lambda p: p.hit_mask([]),
        lambda p: p.unit_slopes([]),
        lambda p: p.predict_model(*chain(3, 4)),
        lambda p: p.fit_calibration([chain(3, 4)], [1.0]),
    ],
)
def test_every_prediction_needs_a_fit(call):
    message = r"^this LatencyPredictor is not fitted; call fit\(table\) first$"
    with pytest.raises(NotFittedError, match=message):
        call(LatencyPredictor("ridge"))


def test_the_breakdown_names_each_unit_and_marks_the_measured_ones():
    p = LatencyPredictor("ridge").fit(table(MIXED))
    model, x = chain(3, 4, 8, 7)  # 8 -> 7 is not in the table
    whole = p.predict_model(model, x, calibrated=False)
    frame = whole.breakdown
    assert frame["name"].tolist() == ["0", "1", "2"]
    assert frame["op"].tolist() == ["conv"] * 3
    assert frame["in_channels"].tolist() == [3, 4, 8]
    assert frame["out_channels"].tolist() == [4, 8, 7]
    assert frame["in_hw"].tolist() == ["8x8"] * 3
    assert frame["measured"].tolist() == [True, True, False]
    assert frame["latency_ms"].tolist()[:2] == [conv_ms(3, 4), conv_ms(4, 8)]
    guess = frame["latency_ms"].iloc[2]  # predicted, not looked up: near 8 -> 7's truth
    assert guess != conv_ms(8, 8) and guess == pytest.approx(conv_ms(8, 7), rel=0.1)
    assert whole.unit_sum_ms == pytest.approx(frame["latency_ms"].sum(), rel=1e-12)
    assert whole.uncovered == ()


def test_unpriced_ops_are_named_in_one_warning():
    class Shuffle(nn.Module):
        def forward(self, x):
            return nn.functional.pixel_shuffle(x, 1) + torch.ones(1, 4, HW, 1)

    p = LatencyPredictor("ridge").fit(table(MIXED))
    message = (
        r"^2 ops have no latency unit and are not priced: "
        r"add \(<model>\), pixel_shuffle \(<model>\)$"
    )
    with pytest.warns(UserWarning, match=message) as caught:
        whole = p.predict_model(Shuffle(), torch.zeros(1, 4, HW, HW))
    assert len(caught) == 1 and caught[0].filename != _predictor.__file__  # the caller's line
    assert whole.total_ms == whole.unit_sum_ms == 0.0 and len(whole.breakdown) == 0
    assert [u.aten for u in whole.uncovered] == ["pixel_shuffle", "add"]


def test_whole_models_are_cut_into_units_with_the_tables_fusion():
    chains = MIXED[:3]
    lut = table(chains, fusion="conv-bn-add-act")
    parts = np.array([sums(*c) for c in chains])
    measured = 1.2 * (parts[:, 0] + parts[:, 1]) + 0.03 * parts[:, 2] + 0.1
    p = LatencyPredictor("ridge").fit(lut)
    assert p.fusion_ == "conv-bn-add-act"
    p.fit_calibration([chain(*c, relu=True) for c in chains], measured)
    assert p.calibration_ == pytest.approx((1.2, 0.03, 0.1), rel=1e-6)
    whole = p.predict_model(*chain(*chains[0], relu=True), calibrated=False)
    assert whole.breakdown["measured"].all() and len(whole.breakdown) == 3  # conv + ReLU each
    expected = conv_ms(3, 4) + conv_ms(4, 8) + conv_ms(8, 8)
    assert whole.unit_sum_ms == pytest.approx(expected, rel=1e-12)


def test_the_thread_count_decides_the_native_pointwise_convs():
    # 1x1 convs: native only up to 2 threads under this rule
    rule = replace(NATIVE, max_input_elements=0, pointwise_max_batch=1, pointwise_max_threads=2)
    rules = DeviceRules(native=rule, call_overhead_ms=T0)
    model = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False)).eval()
    frame = configs_frame([u.config for u in extract_units(model, torch.zeros(1, 8, 8, 8)).units])
    slopes = {}
    for threads in (1, 2, 4):
        p = LatencyPredictor("ridge").fit(table(MIXED, rules, threads))
        assert p.threads_ == threads
        p.calibration_, p.second_slope_ = (1.0, 0.0, 0.0), 3.0
        slopes[threads] = p.unit_slopes(frame).tolist()
    assert slopes == {1: [3.0], 2: [3.0], 4: [1.0]}


def test_a_device_without_a_probed_overhead_uses_the_fastest_unit():
    lut = table(MIXED, DeviceRules(native=NATIVE))
    p = LatencyPredictor("ridge").fit(lut)
    assert p.unit_overhead_ms_ == lut.frame["latency_ms"].min() == conv_ms(2, 2)
    probed = LatencyPredictor("ridge").fit(table(MIXED))
    assert probed.unit_overhead_ms_ == T0 != conv_ms(2, 2)


def test_without_device_rules_no_unit_gets_the_second_slope():
    lut = table(MIXED, DeviceRules(call_overhead_ms=T0))
    p = LatencyPredictor("ridge").fit(lut)
    assert not p.native_conv_slope_ and not p.blocked_layout_
    p.calibration_, p.second_slope_ = (2.0, 0.0, 0.0), 5.0
    assert p.unit_slopes(lut.frame).tolist() == [2.0] * len(lut)
    off = LatencyPredictor("ridge", native_conv_slope=False).fit(table(MIXED))
    off.calibration_, off.second_slope_ = (2.0, 0.0, 0.0), 5.0
    assert off.unit_slopes(lut.frame).tolist() == [2.0] * len(lut)
    on = LatencyPredictor("ridge", native_conv_slope=True).fit(table(MIXED))
    on.calibration_, on.second_slope_ = (2.0, 0.0, 0.0), 5.0
    native = (lut.frame["in_channels"] <= 4).to_numpy()
    assert on.unit_slopes(lut.frame).tolist() == np.where(native, 5.0, 2.0).tolist()
    # one slope for every unit: the native ones are priced like the others
    parts = np.array([sums(*c) for c in MIXED])
    measured = 1.2 * (parts[:, 0] + parts[:, 1]) + 0.03 * parts[:, 2] + 0.1
    p.fit_calibration([chain(*c) for c in MIXED], measured)
    assert p.calibration_ == pytest.approx((1.2, 0.03, 0.1), rel=1e-6)
    assert p.second_slope_ == p.calibration_[0]


#: convs with 16 input channels, or a multiple of 16 above, run blocked, outputs padded to 16
BLOCKED = BlockedLayoutRule(block=16, in_block=16, probed_max=16, dense_blocked=(16,),
                            dense_padded_in=tuple(range(1, 17)), depthwise_blocked=(),
                            in_multiple=16, depthwise_multiple=16)  # fmt: skip
BLOCKED_CHAINS = [(16, 16, 32, 32, 16, 48, 8), *MIXED]


def test_a_blocked_layout_table_gets_one_regressor_per_side_of_the_flag():
    lut = table(BLOCKED_CHAINS, DeviceRules(blocked=BLOCKED, call_overhead_ms=T0))
    blocked = blocked_layout_mask(lut.frame, BLOCKED)
    assert 5 <= blocked.sum() <= len(lut) - 5
    p = LatencyPredictor("ridge").fit(lut)
    assert p.blocked_layout_ and p.estimator_.column == FEATURE_NAMES.index("blocked")
    assert set(p.estimator_.estimators_) == {True, False}
    # the work of blocked convs counts their padding: 16 -> 8 costs what 16 -> 16 does
    padded, plain = unit_work(lut.frame, blocked, BLOCKED), unit_work(lut.frame)
    assert p._work(lut.frame).tolist() == padded.tolist() != plain.tolist()


def test_blocked_convs_take_the_second_calibration_slope():
    lut = table(BLOCKED_CHAINS, DeviceRules(blocked=BLOCKED, call_overhead_ms=T0))
    p = LatencyPredictor("ridge").fit(lut)
    p.calibration_, p.second_slope_ = (2.0, 0.0, 0.0), 5.0
    blocked = blocked_layout_mask(lut.frame, BLOCKED)
    assert p.unit_slopes(lut.frame).tolist() == np.where(blocked, 5.0, 2.0).tolist()


def test_a_blocked_layout_switched_off_prices_as_if_the_rule_were_not_there():
    frame = table(BLOCKED_CHAINS).frame
    unseen = configs_frame([u.config for u in extract_units(*chain(16, 24, 16, 40)).units])
    prices = []
    for rules, on in [(DeviceRules(blocked=BLOCKED, call_overhead_ms=T0), False),
                      (DeviceRules(call_overhead_ms=T0), "auto")]:  # fmt: skip
        lut = table(BLOCKED_CHAINS, rules)
        p = LatencyPredictor("ridge", blocked_layout=on).fit(lut)
        assert not p.blocked_layout_ and p.work_offset_ == work_offset(
            frame["latency_ms"].to_numpy(), unit_work(frame)
        )
        prices.append(p.predict(unseen).tolist())
    assert prices[0] == prices[1]
    on = LatencyPredictor("ridge").fit(table(BLOCKED_CHAINS, DeviceRules(blocked=BLOCKED)))
    assert on.predict(unseen).tolist() != prices[0]  # the rule does change the prices


def test_a_restored_regressor_gives_the_fitted_predictor():
    lut = table(MIXED)
    fitted = LatencyPredictor("ridge").fit(lut)
    restored = LatencyPredictor("ridge").fit_from_state(fitted.estimator_, lut)
    state = ("work_offset_", "lut_", "n_features_in_", "feature_names_", "fusion_",
             "fingerprint_", "calibration_", "second_slope_", "unit_overhead_ms_",
             "call_overhead_ms_", "blocked_layout_", "native_conv_slope_", "threads_",
             "rules_")  # fmt: skip
    for name in state:
        assert getattr(restored, name) == getattr(fitted, name), name
    unseen = configs_frame([u.config for u in extract_units(*chain(8, 7, 5)).units])
    assert restored.predict(unseen).tolist() == fitted.predict(unseen).tolist()
    bare = LatencyPredictor("ridge", exact_hits=False).fit_from_state(fitted.estimator_, lut)
    assert bare.lut_ == {} and not bare.hit_mask(lut.frame).any()
    unprobed = table(MIXED, DeviceRules(native=NATIVE))  # no per-call overhead probed
    restored = LatencyPredictor("ridge").fit_from_state(fitted.estimator_, unprobed)
    assert restored.unit_overhead_ms_ == conv_ms(2, 2)  # the fastest unit of the table


# five chains: the four of MIXED and one more with native and other units
FIVE = [*MIXED, (4, 8, 16, 8)]


def test_leave_one_out_predicts_each_model_from_the_others():
    parts = np.array([sums(*c) for c in FIVE])
    truth = 1.2 * parts[:, 0] + 0.7 * parts[:, 1] + 0.03 * parts[:, 2] + 0.1
    exact = calibrated(FIVE, truth)
    assert exact.calibration_models_ == 5
    assert exact.calibration_loo_ == pytest.approx(np.zeros(5), abs=1e-6)
    measured = truth.copy()
    measured[2] *= 1.25  # one measurement 25% slow (a burst of load, say)
    p = calibrated(FIVE, measured)
    # without it the other four fit exactly (2 slopes, per-unit cost, offset): it is
    # predicted at its true latency, 1 / 1.25 of what was measured
    assert p.calibration_loo_[2] == pytest.approx(1 / 1.25 - 1, rel=1e-5)
    others = np.delete(np.abs(p.calibration_loo_), 2)
    assert (others > 1e-4).all()  # the slow model, kept in, pulls every other fit off
    loo = 100 * np.abs(p.calibration_loo_)
    assert loo.max() >= 20  # fits of four that keep the slow one miss too
    assert p.describe_calibration() == (f"calibrated on 5 measured models; leave-one-out "
                                        f"error median {np.median(loo):.1f}%, worst "
                                        f"{loo.max():.1f}%")  # fmt: skip


def test_no_leave_one_out_error_below_four_models():
    chains = MIXED[:3]
    parts = np.array([sums(*c) for c in chains])
    p = calibrated(chains, 1.1 * parts[:, 0] + 1.1 * parts[:, 1] + 0.1)
    assert p.calibration_models_ == 3 and p.calibration_loo_.shape == (0,)
    assert p.describe_calibration() == (
        "calibrated on 3 measured models (too few for a leave-one-out error: 4 or more)"
    )
    fresh = LatencyPredictor("ridge").fit(table(chains))
    assert fresh.describe_calibration() == "UNCALIBRATED plain unit sum"


# three units each, no native conv (one slope); weights from 7 to 41 KiB
WEIGHTED = [(8, 8, 8, 8), (8, 16, 8, 8), (16, 16, 16, 8), (8, 24, 16, 8), (16, 8, 24, 16),
            (24, 16, 16, 24)]  # fmt: skip
WEIGHTED_HELD = (16, 24, 8, 16)
#: the weighted device's cost per output channel (ms), so work is not weights alone
PER_OUT = 0.01


def weighted_table() -> LatencyTable:
    return table([*WEIGHTED, WEIGHTED_HELD], per_out_channel_ms=PER_OUT)


def weighted_truth(channels, d_ms_per_mib: float) -> float:
    """A device where a model costs ``1.1·Σ(unit − t0) + 0.05 ms`` plus ``d`` per MiB of
    weights (3x3 convs, no bias, fp32)."""
    pairs = list(pairwise(channels))
    units = sum(conv_ms(i, o) + PER_OUT * o - T0 for i, o in pairs)
    mib = sum(i * o * 9 * 4 for i, o in pairs) / 2**20
    return 1.1 * units + 0.05 + d_ms_per_mib * mib


def test_the_calibration_prices_what_weights_cost_in_a_model():
    measured = [weighted_truth(c, 40.0) for c in WEIGHTED]
    p = LatencyPredictor("ridge", native_conv_slope=True).fit(weighted_table())
    p.fit_calibration([chain(*c) for c in WEIGHTED], measured)
    assert p.weight_ms_per_byte_ * 2**20 == pytest.approx(40.0, rel=1e-3)
    assert p.calibration_[0] == pytest.approx(1.1, rel=1e-4)
    assert p.calibration_[2] == pytest.approx(0.05, rel=1e-3)
    model, x = chain(*WEIGHTED_HELD)
    truth = weighted_truth(WEIGHTED_HELD, 40.0)
    assert p.predict_model(model, x).total_ms == pytest.approx(truth, rel=1e-4)
    frame = configs_frame([u.config for u in extract_units(model, x).units])
    # each unit's share carries its own weights' cost, so a group's saving sees it
    assert p.scaled_units(frame).sum() + p.calibration_[2] == pytest.approx(truth, rel=1e-4)
    assert "µs per MiB more in a model than alone" in p.describe_calibration()
    off = LatencyPredictor("ridge", native_conv_slope=True, weight_pricing=False)
    off = off.fit(weighted_table()).fit_calibration([chain(*c) for c in WEIGHTED], measured)
    assert off.weight_ms_per_byte_ == 0.0
    missed = abs(off.predict_model(model, x).total_ms / truth - 1)
    assert missed > 0.005 and missed > 100 * abs(p.predict_model(model, x).total_ms / truth - 1)
    assert off.calibration_loo_worst > 10 * p.calibration_loo_worst


def test_no_weight_cost_without_models_to_spare_or_one_to_find():
    """Below two models more than its coefficients the weight cost is not fitted; on a device
    without one, the fit finds none."""
    p = LatencyPredictor("ridge", native_conv_slope=True).fit(weighted_table())
    p.fit_calibration([chain(*c) for c in WEIGHTED[:4]],
                      [weighted_truth(c, 40.0) for c in WEIGHTED[:4]])  # fmt: skip
    assert p.weight_ms_per_byte_ == 0.0  # a, c and d need 5 models
    p.fit_calibration([chain(*c) for c in WEIGHTED], [weighted_truth(c, 0.0) for c in WEIGHTED])
    assert p.weight_ms_per_byte_ == pytest.approx(0.0, abs=1e-9)
    assert p.calibration_[0] == pytest.approx(1.1, rel=1e-4)


def test_the_weight_cost_is_saved_with_the_predictor(tmp_path):
    import json

    from ttmpd.lut import load_predictor, save_predictor

    lut = weighted_table().save(tmp_path / "weighted.parquet")
    p = LatencyPredictor("ridge", native_conv_slope=True).fit(LatencyTable.load(lut))
    p.fit_calibration([chain(*c) for c in WEIGHTED], [weighted_truth(c, 40.0) for c in WEIGHTED])
    path = save_predictor(p, tmp_path / "p.json", LatencyTable.load(lut), str(lut))
    loaded, _ = load_predictor(path)
    assert p.weight_ms_per_byte_ > 0
    assert loaded.weight_ms_per_byte_ == pytest.approx(p.weight_ms_per_byte_)
    model, x = chain(*WEIGHTED_HELD)
    assert loaded.predict_model(model, x).total_ms == pytest.approx(
        p.predict_model(model, x).total_ms
    )
    payload = json.loads(path.read_text())
    del payload["weight_ms_per_byte"], payload["params"]["weight_pricing"]  # an older file
    path.write_text(json.dumps(payload))
    assert load_predictor(path)[0].weight_ms_per_byte_ == 0.0
