"""The predictor's parts on synthetic data with hand-worked answers: the work offset, the
split regressor, input checks, exact hits, and the calibrated sum of units. Fast: a ridge
regressor on a few dozen rows, no profiling."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression

from ttmpd.errors import InputError
from ttmpd.lut import LatencyPredictor, configs_frame, unit_work, work_offset
from ttmpd.lut._predictor import SplitRegressor
from ttmpd.profiler import UnitConfig

CONVS = [
    UnitConfig(op="conv", batch=1, in_channels=c, out_channels=c, in_h=8, in_w=8, out_h=8,
               out_w=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1)
    for c in (4, 8, 12, 16, 20, 24, 28, 32)
]  # fmt: skip
FRAME = configs_frame(CONVS)
#: latency = 0.02 ms overhead + 1e-6 ms per unit of work
LATENCY = 0.02 + 1e-6 * unit_work(FRAME)


def test_work_offset_is_overhead_over_slope():
    # ten overhead-only units at 0.01 ms (the 2nd percentile), then an exact line
    work = np.array([1.0] * 10 + [100.0 * i for i in range(1, 11)])
    latency = np.where(work > 1, 0.01 + 0.001 * work, 0.01)
    assert work_offset(latency, work) == pytest.approx(0.01 / 0.001)


def test_work_offset_counts_only_units_well_above_the_overhead():
    # t0 = 1; a unit at 3.5 t0 is not "at least 4x slower" and must not pull k down
    work = np.array([1.0] * 50 + [1000.0, 100.0, 200.0, 300.0])
    latency = np.array([1.0] * 50 + [3.5, 1.5 * 4, 1.5 * 6, 1.5 * 8])
    # big units: (6 - 1) / 100, (9 - 1) / 200, (12 - 1) / 300 -> median 0.04
    assert work_offset(latency, work) == pytest.approx(1 / 0.04)


def test_work_offset_leaves_out_a_unit_exactly_four_times_the_overhead():
    work = np.array([1.0] * 50 + [50.0, 100.0, 200.0, 300.0])
    latency = np.array([1.0] * 50 + [4.0, 1.5 * 4, 1.5 * 6, 1.5 * 8])  # 4.0: not "> 4 t0"
    assert work_offset(latency, work) == pytest.approx(1 / 0.04)  # median of the other three


def test_work_offset_falls_back_to_the_median_work_below_three_big_units():
    work = np.array([1.0] * 50 + [100.0, 200.0, 300.0])
    latency = np.array([1.0] * 50 + [5.0, 9.0, 3.0])  # two units above 4 t0
    assert work_offset(latency, work) == np.median(work)
    latency[-1] = 13.0  # three: (5 - 1)/100, (9 - 1)/200, (13 - 1)/300 -> median 0.04
    assert work_offset(latency, work) == pytest.approx(25.0)


def test_the_pooled_regressor_sees_the_features():
    # 4 flagged rows: one line through all ten rows, fitted on X, not on y alone
    X = np.c_[np.r_[np.ones(4), np.zeros(6)], np.arange(10.0)]
    y = 3.0 * X[:, 1] + 1.0
    model = SplitRegressor(LinearRegression(), column=0, min_rows=5).fit(X, y)
    assert model.predict(np.array([[1.0, 20.0], [0.0, -2.0]])) == pytest.approx([61.0, -5.0])


def _split_data(flagged: int, plain: int):
    X = np.r_[np.ones(flagged), np.zeros(plain)][:, None]
    y = np.r_[np.full(flagged, 10.0), np.full(plain, 1.0)]
    return X, y


def test_split_regressor_fits_each_side_on_its_own_rows():
    X, y = _split_data(5, 6)
    model = SplitRegressor(DummyRegressor(), column=0, min_rows=5).fit(X, y)
    assert model.predict(np.array([[1.0], [0.0], [0.7], [0.2]])).tolist() == [10, 1, 10, 1]
    assert model.predict(np.array([[0.0], [0.0]])).tolist() == [1, 1]  # one side only
    assert model.predict(np.array([[0.5]])).tolist() == [1]  # a flag is "on" above 0.5
    # the same at the defaults (column 0, 5 rows a side); 0.5 trains the unflagged side
    X, y = np.c_[np.r_[X[:, 0], 0.5], np.zeros(12)], np.r_[y, 1.0]
    assert SplitRegressor(DummyRegressor()).fit(X, y).predict(X[[0, -1]]).tolist() == [10, 1]


def test_split_regressor_pools_when_a_side_is_too_small():
    X, y = _split_data(4, 6)
    model = SplitRegressor(DummyRegressor(), column=0, min_rows=5).fit(X, y)
    assert model.predict(np.array([[1.0], [0.0]])).tolist() == [4.6, 4.6]  # (40 + 6) / 10
    X, y = _split_data(6, 4)
    pooled = SplitRegressor(DummyRegressor(), column=0, min_rows=5).fit(X, y)
    assert pooled.predict(np.array([[1.0]])).tolist() == [6.4]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((FRAME.iloc[:4], LATENCY[:4]), "fit needs >= 5 rows with one latency each, got 4"),
        ((FRAME, LATENCY[:-1]), "fit needs >= 5 rows with one latency each, got 8"),
        ((FRAME,), r"fit needs y \(latency in ms\) or a table with latency_ms"),
        ((FRAME, -LATENCY), "latencies must be positive and finite"),
        ((FRAME, np.r_[LATENCY[:-1], np.inf]), "latencies must be positive and finite"),
        ((FRAME, np.r_[LATENCY[:-1], 0.0]), "latencies must be positive and finite"),
        ((FRAME, [*LATENCY[:-1], None]), "latencies must be positive and finite"),  # missing
        (([CONVS[0], "conv"],), "predict takes a table-shaped DataFrame or a list of UnitConfig"),
    ],
)
def test_fit_rejects_bad_input(args, message):
    with pytest.raises(InputError, match=f"^{message}$"):
        LatencyPredictor("ridge").fit(*args)


def test_fit_accepts_five_rows_and_a_frame_carrying_its_latency():
    p = LatencyPredictor("ridge").fit(FRAME.iloc[:5], LATENCY[:5])
    assert p.predict(FRAME.iloc[:5]).tolist() == LATENCY[:5].tolist()  # exact hits
    assert p.predict(FRAME.iloc[2:3]).tolist() == LATENCY[2:3].tolist()  # one row
    carried = FRAME.assign(latency_ms=LATENCY)
    assert LatencyPredictor("ridge").fit(carried).predict(FRAME).tolist() == LATENCY.tolist()


@pytest.mark.parametrize(
    ("name", "words"),
    [("blocked_layout", "'auto'"), ("native_conv_slope", "'auto'"),
     ("memory_pricing", "'auto', 'fit'")],
)  # fmt: skip
def test_switches_take_auto_or_a_bool_the_table_supports(name, words):
    with pytest.raises(InputError, match=f"^{name} must be {words}, True or False, got 'yes'$"):
        LatencyPredictor("ridge", **{name: "yes"}).fit(FRAME, LATENCY)
    message = (
        rf"^{name}=True, but the table's device rules hold no such rule "
        r"\(re-profile the table to probe them, or leave it 'auto'\)$"
    )
    with pytest.raises(InputError, match=message):
        LatencyPredictor("ridge", **{name: True}).fit(FRAME, LATENCY)
    p = LatencyPredictor("ridge", **{name: False}).fit(FRAME, LATENCY)
    assert not getattr(p, f"{name}_")


def test_the_defaults_are_the_documented_ones():
    assert LatencyPredictor().get_params() == {
        "regressor": "blend", "exact_hits": True, "random_state": 0, "blocked_layout": "auto",
        "native_conv_slope": "auto", "reorder_pricing": "auto", "reorder_graph": True,
        "memory_pricing": "fit", "weight_pricing": True, "memory_alone": True,
    }  # fmt: skip


def test_the_random_state_reaches_the_regressor():
    seen, unseen = [0, 2, 4, 6, 7], [1, 3, 5]  # random splits part the gaps differently
    fits = [LatencyPredictor("extra", random_state=s).fit(FRAME.iloc[seen], LATENCY[seen])
            for s in (3, 3, 4)]  # fmt: skip
    first, again, other = (p.predict(FRAME.iloc[unseen]).tolist() for p in fits)
    assert first == again and first != other


def test_a_frame_without_keys_is_all_predicted():
    keyless = FRAME.drop(columns="key")
    p = LatencyPredictor("ridge").fit(keyless, LATENCY)
    assert p.lut_ == {} and p.fusion_ == "none" and p.fingerprint_ is None
    with_keys = LatencyPredictor("ridge", exact_hits=False).fit(FRAME, LATENCY)
    assert p.predict(keyless).tolist() == with_keys.predict(FRAME).tolist()
    exact = LatencyPredictor("ridge").fit(FRAME, LATENCY)  # keys known, none asked for
    assert exact.predict(keyless).tolist() == with_keys.predict(FRAME).tolist()
    assert exact.hit_mask(FRAME).all() and exact.hit_mask(keyless).tolist() == [False] * 8


def test_without_exact_hits_every_row_is_predicted():
    p = LatencyPredictor("ridge", exact_hits=False).fit(FRAME, LATENCY)
    assert not p.hit_mask(FRAME).any()
    predicted = p.predict(CONVS)
    assert not np.array_equal(predicted, LATENCY)
    # a plain line in work: the rate is flat, so the predictions sit within 5% of it
    assert np.abs(predicted / LATENCY - 1).max() < 0.05
    assert p.predict([]).tolist() == []


def test_hits_come_back_exactly_and_misses_are_predicted():
    seen, unseen = [0, 1, 2, 4, 6], [3, 5, 7]
    p = LatencyPredictor("ridge").fit(FRAME.iloc[seen], LATENCY[seen])
    assert np.flatnonzero(p.hit_mask(FRAME)).tolist() == seen
    predicted = p.predict(FRAME)
    assert predicted[seen].tolist() == LATENCY[seen].tolist()
    assert not np.isin(predicted[unseen], LATENCY).any()
    assert np.abs(predicted[unseen] / LATENCY[unseen] - 1).max() < 0.2  # from 5 rows


def test_fit_resets_the_calibration_and_keeps_the_fastest_unit_as_overhead():
    p = LatencyPredictor("ridge").fit(FRAME, LATENCY)
    assert p.calibration_ == (1.0, 0.0, 0.0) and p.second_slope_ == 1.0
    assert p.unit_overhead_ms_ == LATENCY.min() and p.call_overhead_ms_ == 0.0
    assert p.work_offset_ == work_offset(LATENCY, unit_work(FRAME))


def test_calibrated_totals_by_hand():
    p = LatencyPredictor("ridge").fit(FRAME, LATENCY)
    p.calibration_, p.call_overhead_ms_ = (2.0, 0.5, 1.0), 0.1
    latency = np.array([0.3, 0.5, 0.2, 1.1, 0.4, 0.6, 0.1, 0.9])
    # two models of four units: 2 * sum(latency - 0.1) + 0.5 * 4 + 1
    expected = [2 * (2.1 - 0.4) + 3, 2 * (2.0 - 0.4) + 3]
    assert p.calibrated_totals(FRAME, 2, latency) == pytest.approx(expected)
    assert p.calibrated_total(FRAME.iloc[:4], latency[:4]) == pytest.approx(expected[0])
    assert p.scaled_units(FRAME) == pytest.approx(2 * (LATENCY - 0.1))  # measured latencies
    assert p.unit_slopes(FRAME.iloc[:0]).tolist() == []
