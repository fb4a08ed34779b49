import copy
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from nets import UNITS, DepthwiseNet, ResidualNet
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ttmpd.errors import InputError, LutError
from ttmpd.lut import (
    LatencyPredictor,
    LatencyTable,
    PruneSavings,
    configs_frame,
    coupled_channels,
    cross_validate_regressors,
    load_predictor,
    profile_model,
    save_predictor,
    unit_work,
    work_offset,
)
from ttmpd.lut._features import block_macs, blocked_layout_mask, native_conv_mask
from ttmpd.lut._schema import config_from_row
from ttmpd.profiler import (
    DeviceRules,
    GridConfig,
    NativeConvRule,
    UnitConfig,
    extract_units,
    get_backend,
)
from ttmpd.profiler.backends import fake_latency_ms


@pytest.fixture(scope="module")
def fake_lut(tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "fake.parquet"
    x = torch.randn(1, 3, 16, 16)
    grid = GridConfig(channel_step=4, off_grid_per_unit=6)
    for net in (ResidualNet(c=32), DepthwiseNet(c=16)):
        profile_model(net.eval(), x, get_backend("fake"), path, grid=grid, resume=True,
                      progress=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def block16_lut(tmp_path_factory):
    """A table of the fake device emulating a 16-channel blocked layout (rules probed)."""
    path = tmp_path_factory.mktemp("lut16") / "fake16.parquet"
    x = torch.randn(1, 3, 16, 16)
    grid = GridConfig(channel_step=4, off_grid_per_unit=6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTMPD_FAKE_BLOCK", "16")
        for net in (ResidualNet(c=32), DepthwiseNet(c=16)):
            profile_model(net.eval(), x, get_backend("fake"), path, grid=grid, resume=True,
                          progress=False)  # fmt: skip
    return path


def with_native_rule(table: LatencyTable) -> LatencyTable:
    rule = NativeConvRule(20480, 3, 1, 8, 1)
    return LatencyTable(table.frame, replace(table.meta, rules=DeviceRules(native=rule).to_dict()))


@pytest.fixture(scope="module")
def predictor(fake_lut):
    return LatencyPredictor().fit(LatencyTable.load(fake_lut))


def test_sklearn_conventions(fake_lut):
    p = LatencyPredictor(regressor="rf", random_state=3)
    assert p.get_params() == {
        "regressor": "rf", "exact_hits": True, "random_state": 3, "blocked_layout": "auto",
        "native_conv_slope": "auto", "reorder_pricing": "auto", "reorder_graph": True,
        "memory_pricing": "fit", "weight_pricing": True, "memory_alone": True,
    }  # fmt: skip
    with pytest.raises(NotFittedError):
        p.predict(UNITS[:2])
    assert p.fit(LatencyTable.load(fake_lut)) is p
    assert hasattr(p, "estimator_") and not hasattr(clone(p), "estimator_")


def test_exact_hits_are_returned_as_measured(predictor, fake_lut):
    table = LatencyTable.load(fake_lut)
    np.testing.assert_array_equal(predictor.predict(table.frame), table.frame["latency_ms"])
    assert predictor.hit_mask(table.frame).all()


def test_unmeasured_configs_are_predicted_close(fake_lut):
    table = LatencyTable.load(fake_lut)
    frame = table.frame.sample(frac=1.0, random_state=0)
    train, test = frame.iloc[: len(frame) * 3 // 4], frame.iloc[len(frame) * 3 // 4 :]
    p = LatencyPredictor().fit(train, train["latency_ms"])
    assert not p.hit_mask(test).any()
    error = np.abs(p.predict(test) / test["latency_ms"].to_numpy() - 1)
    assert np.median(error) < 0.05


def test_each_distinct_configuration_reaches_the_regressor_once(fake_lut):
    """The rate cache: repeated rows (within a call and across calls) are priced by the
    regressor once and read back exactly; a refit regressor starts over."""
    table = LatencyTable.load(fake_lut)
    frame = table.frame.sample(frac=1.0, random_state=0)
    train, test = frame.iloc[:-12], frame.iloc[-12:]
    p = LatencyPredictor().fit(train, train["latency_ms"])
    truth = p.predict(test)
    seen = []
    regressor_predict = p.estimator_.predict

    def counted(features):
        seen.append(len(features))
        return regressor_predict(features)

    p.estimator_.predict = counted
    twice = pd.concat([test, test.iloc[::-1]], ignore_index=True)
    np.testing.assert_array_equal(p.predict(twice), np.concatenate([truth, truth[::-1]]))
    assert seen == []  # every row was priced by the first call
    p.__dict__.pop("_rate_cache")
    np.testing.assert_array_equal(p.predict(twice), np.concatenate([truth, truth[::-1]]))
    assert seen == [len(test)]  # each distinct row once
    again = LatencyPredictor(regressor="rf", random_state=1).fit(train, train["latency_ms"])
    p.estimator_ = again.estimator_
    assert not np.allclose(p.predict(test), truth)


def test_derived_columns_match_unit_configs():
    frame = configs_frame(UNITS)
    for unit, row in zip(UNITS, frame.to_dict("records"), strict=True):
        assert row["key"] == unit.key
        assert (row["macs"], row["params"]) == (unit.macs, unit.params)
        assert (row["input_elements"], row["output_elements"]) == (
            unit.input_elements,
            unit.output_elements,
        )


def test_predict_model_breakdown_and_calibration(predictor):
    x = torch.randn(1, 3, 16, 16)
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 16, 12)]
    fake = get_backend("fake")
    measured = [fake.measure_model(n, x).median_ms for n in nets]
    p = copy.deepcopy(predictor).fit_calibration([(n, x) for n in nets], measured)
    a, _, c = p.calibration_
    units = extract_units(nets[0], x).units
    # fake: whole = 1.1 x Σ unit + 0.01; the calibration counts each unit without t0
    expected_c = 0.01 + 1.1 * p.call_overhead_ms_ * len(units)
    assert a == pytest.approx(1.1, rel=0.05) and c == pytest.approx(expected_c, rel=0.1)
    pred = p.predict_model(nets[0], x)
    assert len(pred.breakdown) == len(units)
    assert list(pred.breakdown["name"]) == [u.name for u in units]
    assert pred.unit_sum_ms == pytest.approx(pred.breakdown["latency_ms"].sum())
    assert pred.total_ms == pytest.approx(measured[0], rel=0.03)


def test_unpriced_ops_warn_by_name(predictor):
    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.pixel_shuffle(x, 1) + torch.ones(1, 4, 8, 1)

    with pytest.warns(UserWarning, match="pixel_shuffle"):
        pred = predictor.predict_model(Odd(), torch.randn(1, 4, 8, 8))
    assert {u.aten for u in pred.uncovered} == {"pixel_shuffle", "add"}


def test_coupled_channels_of_a_residual_net():
    x = torch.randn(1, 3, 16, 16)
    net = ResidualNet(c=32).eval()
    extraction = extract_units(net, x)
    groups = {g.id: g for g in coupled_channels(extraction)}
    names = {u.index: u.name for u in extraction.units}
    residual = groups["stem.0"]  # stem, conv2 and the classifier input share the stream
    members = {(names[i], d) for i, d, _ in residual.members}
    assert {("stem.0", "out"), ("conv2", "out"), ("conv1", "in"), ("fc", "in")} <= members
    assert residual.prunable and residual.channels == 32
    assert groups["conv1"].prunable
    assert not groups["fc"].prunable  # classifier outputs


@pytest.mark.parametrize("fusion", ["none", "conv-bn-add-act"])
@pytest.mark.parametrize("net_cls", [ResidualNet, DepthwiseNet])
def test_savings_equal_the_prediction_of_the_pruned_model(predictor, net_cls, fusion):
    tp = pytest.importorskip("torch_pruning")
    predictor = copy.deepcopy(predictor)
    predictor.fusion_ = fusion  # units as ONNX Runtime NCHWc fuses them (residual into conv)
    x = torch.randn(1, 3, 16, 16)
    net = net_cls().eval()
    savings = PruneSavings(predictor, net, x)
    base = predictor.predict_model(net, x, calibrated=False).unit_sum_ms
    checked = 0
    for group in savings.groups.values():
        module = dict(net.named_modules()).get(group.id)
        if not group.prunable or not isinstance(module, torch.nn.Conv2d):
            continue
        k = group.channels // 2
        pruned = copy.deepcopy(net)
        graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=x)
        target = dict(pruned.named_modules())[group.id]
        graph.get_pruning_group(target, tp.prune_conv_out_channels, idxs=list(range(k))).prune()
        actual = base - predictor.predict_model(pruned, x, calibrated=False).unit_sum_ms
        assert savings.savings([(group.id, k)])[0] == pytest.approx(actual, rel=1e-6)
        checked += 1
    assert checked >= 1
    costs = savings.costs(step=8)  # a whole block of 8: a real saving on the fake staircase
    assert (costs["ms_per_channel"] > 0).all() and set(costs["group"]) <= set(savings.groups)
    with pytest.raises(InputError, match="unknown channel group"):
        savings.savings([("nope", 1)])


def test_save_load_round_trip_and_refit_rules(predictor, fake_lut, tmp_path, caplog):
    table = LatencyTable.load(fake_lut)
    path = save_predictor(predictor, tmp_path / "p.json", table, str(fake_lut))
    loaded, _ = load_predictor(path)
    np.testing.assert_allclose(loaded.predict(UNITS), predictor.predict(UNITS))
    payload = json.loads(path.read_text())
    payload["sklearn_version"] = "0.0.1"
    path.write_text(json.dumps(payload))
    with caplog.at_level("WARNING"):
        refit, _ = load_predictor(path)
    assert "scikit-learn version changed" in caplog.text
    np.testing.assert_allclose(refit.predict(UNITS), predictor.predict(UNITS), rtol=1e-6)
    moved = tmp_path / "elsewhere.json"
    moved.write_text(json.dumps({**payload, "lut_path": "missing.parquet"}))
    with pytest.raises(LutError, match=r"missing.*scikit-learn 0\.0\.1"):
        load_predictor(moved)
    older = tmp_path / "older.json"
    older.write_text(json.dumps({**payload, "sklearn_version": sklearn.__version__,
                                 "features": ["log_macs"]}))  # fmt: skip
    caplog.clear()
    with caplog.at_level("WARNING"):
        refit, _ = load_predictor(older)
    assert "the features changed" in caplog.text
    np.testing.assert_allclose(refit.predict(UNITS), predictor.predict(UNITS), rtol=1e-6)
    renamed = tmp_path / "renamed.json"  # a file from before the slope's rename
    old = {k: v for k, v in payload.items() if k != "second_slope"}
    renamed.write_text(json.dumps({**old, "sklearn_version": sklearn.__version__,
                                   "aligned_slope": 0.25}))  # fmt: skip
    assert load_predictor(renamed)[0].second_slope_ == 0.25
    (tmp_path / "foreign.json").write_text("{}")
    with pytest.raises(LutError, match="not a ttmpd predictor"):
        load_predictor(tmp_path / "foreign.json")


def test_cross_validation_reports_every_regressor(fake_lut):
    cv = cross_validate_regressors(LatencyTable.load(fake_lut), ["gbr", "ridge"], folds=3)
    assert set(cv["regressor"]) == {"gbr", "ridge"}
    assert (cv["mape_pct"] < 100).all() and cv.iloc[0]["mape_pct"] <= cv.iloc[1]["mape_pct"]


def test_fake_latency_has_a_staircase():
    unit = UNITS[0]
    assert fake_latency_ms(unit.replace(out_channels=9)) == pytest.approx(
        fake_latency_ms(unit.replace(out_channels=16)), rel=0.05
    )


def test_work_offset_is_where_overhead_equals_work():
    work = np.geomspace(1e3, 1e9, 200)
    latency = 0.004 + 2e-8 * work  # t0 = 4 µs, k = 2e-8 ms per unit of work
    assert work_offset(latency, work) == pytest.approx(0.004 / 2e-8, rel=0.05)
    assert work_offset(np.full(5, 0.01), np.arange(1.0, 6.0)) == 3.0  # flat: median work


def test_unit_work_is_macs_or_elements():
    frame = configs_frame(UNITS)
    work = unit_work(frame)
    conv = (frame["op"] == "conv").to_numpy()
    assert (work[conv] == frame["macs"].to_numpy()[conv] + 1).all()
    other = ~conv & (frame["macs"].to_numpy() == 0)
    expected = frame["input_elements"] + frame["output_elements"] + 1
    assert (work[other] == expected.to_numpy()[other]).all()


def test_blocked_convs_work_with_the_padding_of_their_block(block16_lut):
    # 16->4 at 8x8, 3x3: a blocked kernel computes a whole 16-wide output block
    rule = LatencyTable.load(block16_lut).meta.device_rules.blocked
    narrow = UnitConfig(op="conv", batch=1, in_channels=16, out_channels=4, in_h=8, in_w=8, out_h=8,
                        out_w=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1)  # fmt: skip
    frame = configs_frame([narrow, narrow.replace(out_channels=16),
                           narrow.replace(in_channels=20, out_channels=20)])  # fmt: skip
    plain, padded = unit_work(frame), unit_work(frame, np.array([True, True, True]), rule)
    assert plain[0] == 16 * 4 * 64 * 9 + 1
    assert padded[0] == padded[1] == plain[1] == 16 * 16 * 64 * 9 + 1
    assert padded[2] == 32 * 32 * 64 * 9 + 1  # wide inputs are blocked too
    unmasked = unit_work(frame, np.array([False, True, False]), rule)
    assert unmasked[0] == plain[0] and unmasked[2] == plain[2]


def test_blocked_layout_prices_narrow_convs_like_their_block(block16_lut):
    # a device whose blocked convs cost their padded MACs; the table has c_out >= 8 only
    rules = LatencyTable.load(block16_lut).meta.device_rules
    base = UnitConfig(op="conv", batch=1, in_channels=8, out_channels=8, in_h=8, in_w=8, out_h=8,
                      out_w=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1)  # fmt: skip
    grid = [base.replace(in_channels=i, out_channels=o, in_h=h, in_w=h, out_h=h, out_w=h)
            for i in range(8, 65, 8) for o in range(8, 65, 8) for h in (8, 16)]  # fmt: skip
    frame = configs_frame(grid)
    truth = lambda f: 0.002 + 1e-6 * block_macs(f, rules.blocked)  # noqa: E731
    narrow = configs_frame([base.replace(in_channels=16, out_channels=c) for c in (2, 4, 6)])
    table = LatencyTable.load(block16_lut)
    errors = {}
    for on in (True, False):
        y = truth(frame)
        rows = frame.assign(latency_ms=y, p10_ms=y, p90_ms=y, samples=7, spread=0.0,
                            unstable=False, measured_at="")  # fmt: skip
        synthetic = LatencyTable(rows, table.meta)
        p = LatencyPredictor(blocked_layout=on).fit(synthetic)
        errors[on] = p.predict(narrow) / truth(narrow) - 1
    assert np.abs(errors[True]).max() < 0.05
    assert (errors[False] < -0.05).all() and errors[False].min() < -0.3  # plain MACs


def test_calibration_fits_relative_error_and_allows_a_negative_offset(predictor):
    x = torch.randn(1, 3, 16, 16)
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 16, 12, 8)]
    sums = np.array([predictor.predict_model(n, x, calibrated=False).unit_sum_ms for n in nets])
    measured = 0.9 * sums - 0.2 * sums.min()  # per-call overhead counted once per unit
    p = copy.deepcopy(predictor).fit_calibration([(n, x) for n in nets], measured)
    a, b, c = p.calibration_
    assert a == pytest.approx(0.9, rel=1e-3) and b == 0.0
    assert p.second_slope_ == pytest.approx(0.9, rel=1e-3)
    n_units = len(extract_units(nets[0], x).units)  # the same for every width
    expected_c = -0.2 * sums.min() + 0.9 * p.call_overhead_ms_ * n_units  # units without t0
    assert c == pytest.approx(expected_c, rel=1e-2)
    with pytest.raises(InputError, match="positive"):
        p.fit_calibration([(n, x) for n in nets], [0.0] * len(nets))


def test_blocked_layout_follows_the_tables_probed_rules(fake_lut, block16_lut):
    plain, blocked = LatencyTable.load(fake_lut), LatencyTable.load(block16_lut)
    assert not LatencyPredictor().fit(plain).blocked_layout_  # "auto": the probe found none
    assert LatencyPredictor().fit(blocked).blocked_layout_  # ... here it found block 16
    assert not LatencyPredictor(blocked_layout=False).fit(blocked).blocked_layout_
    with pytest.raises(InputError, match="no such rule"):
        LatencyPredictor(blocked_layout=True).fit(plain)
    with pytest.raises(InputError, match="blocked_layout"):
        LatencyPredictor(blocked_layout="yes").fit(blocked)


def test_without_blocked_layout_every_unit_shares_one_slope(predictor):
    x = torch.randn(1, 3, 16, 16)
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 20, 16, 12, 8)]
    sums = [predictor.predict_model(n, x, calibrated=False).unit_sum_ms for n in nets]
    p = copy.deepcopy(predictor).fit_calibration([(n, x) for n in nets], 0.7 * np.array(sums))
    assert p.second_slope_ == p.calibration_[0] == pytest.approx(0.7, rel=1e-2)


def test_blocked_layout_convs_get_their_own_slope(block16_lut):
    # reorders left unpriced: the synthetic totals below hold none
    predictor = LatencyPredictor(reorder_pricing=False).fit(LatencyTable.load(block16_lut))
    rule = predictor.rules_.blocked
    x = torch.randn(1, 3, 16, 16)
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 20, 16, 12, 8)]
    parts = []
    for n in nets:
        frame = configs_frame([u.config for u in extract_units(n, x).units])
        latency = predictor.predict(frame) - predictor.unit_overhead_ms_  # t0 paid once
        blocked = blocked_layout_mask(frame, rule)
        assert blocked.any() and (~blocked).any()
        parts.append((latency[~blocked].sum(), latency[blocked].sum()))
    other, aligned = np.array(parts).T
    measured = 1.0 * other + 0.6 * aligned + 0.01  # whole graphs discount aligned chains
    p = copy.deepcopy(predictor).fit_calibration([(n, x) for n in nets], measured)
    assert p.calibration_[0] == pytest.approx(1.0, rel=1e-2)
    assert p.second_slope_ == pytest.approx(0.6, rel=1e-2)
    assert p.calibration_[2] == pytest.approx(0.01, abs=2e-3)
    assert p.predict_model(nets[0], x).total_ms == pytest.approx(measured[0], rel=1e-3)
    savings = PruneSavings(p, nets[0], x)
    group = next(g for g in savings.groups.values() if g.prunable)
    pruned = savings.latencies([{group.id: 8}])[0]
    assert savings.savings([(group.id, 8)])[0] == pytest.approx(
        savings.latencies([{}])[0] - pruned, rel=1e-9
    )


def test_native_path_convs_get_their_own_calibration_slope(fake_lut):
    """torch-cpu: convs on PyTorch's native path run slower inside a whole model."""
    p = LatencyPredictor(native_conv_slope=True).fit(with_native_rule(LatencyTable.load(fake_lut)))
    x = torch.randn(1, 3, 32, 32)  # c * 32 * 32 > 20480 only for c > 20: a mix of paths
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 16, 12, 8)]
    measured = []
    for net in nets:
        frame = configs_frame([u.config for u in extract_units(net, x, p.fusion_).units])
        latency = p.predict(frame) - p.unit_overhead_ms_  # each unit's t0 is paid once
        native = native_conv_mask(frame, p.rules_.native)
        measured.append(latency[~native].sum() + 1.5 * latency[native].sum())
    p.fit_calibration([(n, x) for n in nets], measured)
    assert p.calibration_[0] == pytest.approx(1.0, rel=0.02)
    assert p.second_slope_ == pytest.approx(1.5, rel=0.02)
    assert p.predict_model(nets[0], x).total_ms == pytest.approx(measured[0], rel=0.01)
    assert not LatencyPredictor().fit(LatencyTable.load(fake_lut)).native_conv_slope_  # no rule


@pytest.mark.parametrize("block", [8, 16])
def test_predictor_follows_the_block_of_the_device_it_was_profiled_on(tmp_path, monkeypatch, block):
    """Two fake devices, one rule form, different blocks: each table's predictor prices
    held-out channel counts like its own device, because the rule was probed, not typed."""
    monkeypatch.setenv("TTMPD_FAKE_BLOCK", str(block))
    path = tmp_path / "lut.parquet"
    profile_model(ResidualNet(c=32).eval(), torch.randn(1, 3, 16, 16), get_backend("fake"),
                  path, grid=GridConfig(channel_step=8, off_grid_per_unit=8),
                  progress=False)  # fmt: skip
    table = LatencyTable.load(path)
    assert table.meta.device_rules.blocked.block == block
    frame = table.frame
    dense = frame[(frame["op"] == "conv") & (frame["groups"] == 1) & (frame["kernel_h"] == 3)
                  & (frame["in_channels"] > 3)]  # fmt: skip
    conv = config_from_row(dense.iloc[0].to_dict())  # a unit shape of this net
    measured = set(frame["key"])
    pairs = [(20, 20), (12, 27), (28, 5), (20, 7), (4, 30), (28, 13), (28, 22), (12, 6)]
    candidates = [conv.replace(in_channels=i, out_channels=o) for i, o in pairs]
    # blocked convs off the grid: their padding is what the probed block decides
    held_out = [c for c in candidates if c.key not in measured]
    assert len(held_out) >= 6
    truth = np.array([fake_latency_ms(c) for c in held_out])
    error = {}
    for on in (True, False):
        p = LatencyPredictor(blocked_layout=on).fit(table)
        error[on] = np.abs(p.predict(held_out) / truth - 1)
    assert np.median(error[True]) < 0.05, error[True]
    assert error[True].mean() < error[False].mean()


def test_the_probed_per_call_overhead_is_what_calibration_subtracts(fake_lut):
    from ttmpd.profiler.backends._base import TRIVIAL_UNIT

    table = LatencyTable.load(fake_lut)
    probed = table.meta.device_rules.call_overhead_ms
    assert probed == pytest.approx(fake_latency_ms(TRIVIAL_UNIT), rel=1e-9)
    p = LatencyPredictor().fit(table)
    assert p.unit_overhead_ms_ == probed and p.call_overhead_ms_ == 0.0  # plain sum first
    x = torch.randn(1, 3, 16, 16)
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 16)]
    p.fit_calibration([(n, x) for n in nets], [1.0, 0.8, 0.6])
    assert p.call_overhead_ms_ == probed
    # a table from before the probe, on its own device: probed on first use
    old = LatencyTable(table.frame, replace(table.meta, rules={}))
    assert LatencyPredictor().fit(old).unit_overhead_ms_ == probed
    # no device at all (a bare frame): the fastest measured unit stands in
    frame = table.frame
    bare = LatencyPredictor().fit(frame, frame["latency_ms"].to_numpy())
    assert bare.unit_overhead_ms_ == frame["latency_ms"].min()


def test_the_old_names_of_coupled_channels_still_resolve_with_a_warning():
    import ttmpd.lut as lut

    with pytest.warns(DeprecationWarning, match="CoupledChannels"):
        assert lut.ChannelGroup is lut.CoupledChannels
    with pytest.warns(DeprecationWarning, match="coupled_channels"):
        assert lut.channel_groups is lut.coupled_channels
    with pytest.raises(AttributeError):
        lut.NoSuchName  # noqa: B018


def test_the_calibrations_leave_one_out_error_is_saved_with_it(predictor, fake_lut, tmp_path):
    x = torch.randn(1, 3, 16, 16)
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 16, 12)]
    measured = [get_backend("fake").measure_model(n, x).median_ms for n in nets]
    p = copy.deepcopy(predictor).fit_calibration([(n, x) for n in nets], measured)
    assert p.calibration_models_ == 4 and p.calibration_loo_.shape == (4,)
    table = LatencyTable.load(fake_lut)
    path = save_predictor(p, tmp_path / "p.json", table, str(fake_lut))
    loaded, _ = load_predictor(path)
    assert loaded.calibration_models_ == 4
    np.testing.assert_array_equal(loaded.calibration_loo_, p.calibration_loo_)
    assert loaded.describe_calibration() == p.describe_calibration()
    payload = json.loads(path.read_text())  # a file from before the error was recorded
    old = {k: v for k, v in payload.items() if k not in ("calibration_models", "calibration_loo")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    before, _ = load_predictor(tmp_path / "old.json")
    assert before.calibration_models_ is None
    assert before.describe_calibration() == "calibrated (the file records no leave-one-out error)"
    plain = save_predictor(predictor, tmp_path / "plain.json", table, str(fake_lut))
    payload = json.loads(plain.read_text())
    old = {k: v for k, v in payload.items() if k not in ("calibration_models", "calibration_loo")}
    (tmp_path / "plain_old.json").write_text(json.dumps(old))
    assert load_predictor(tmp_path / "plain_old.json")[0].calibration_models_ == 0


def test_a_saved_calibration_keeps_its_reorder_pricing(block16_lut, tmp_path):
    table = LatencyTable.load(block16_lut)
    x = torch.randn(1, 3, 16, 16)
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 20, 16, 12)]
    p = LatencyPredictor().fit(table)
    assert p.reorder_pricing_ and not p.reorders_priced_  # the plain sum until calibrated
    assert not p.reorder_delta_ms(configs_frame(UNITS)).any()
    p.fit_calibration([(n, x) for n in nets], [1.0, 0.8, 0.7, 0.6, 0.5])
    assert p.reorders_priced_ and p.reorder_delta_ms(configs_frame(UNITS)).any()
    path = save_predictor(p, tmp_path / "p.json", table, str(block16_lut))
    loaded, _ = load_predictor(path)
    assert loaded.reorders_priced_
    assert loaded.predict_model(nets[0], x).total_ms == pytest.approx(
        p.predict_model(nets[0], x).total_ms
    )
    payload = json.loads(path.read_text())
    del payload["reorders_priced"]  # a file from before reorders were priced
    path.write_text(json.dumps(payload))
    assert not load_predictor(path)[0].reorders_priced_


def test_a_file_from_before_graph_reorders_keeps_its_unit_by_unit_pricing(block16_lut, tmp_path):
    """Its calibration was fitted with reorders counted unit by unit: it loads that way."""
    table = LatencyTable.load(block16_lut)
    x = torch.randn(1, 3, 16, 16)
    nets = [ResidualNet(c=c).eval() for c in (32, 24, 20, 16, 12)]
    p = LatencyPredictor(reorder_graph=False).fit(table)
    p.fit_calibration([(n, x) for n in nets], [1.0, 0.8, 0.7, 0.6, 0.5])
    path = save_predictor(p, tmp_path / "p.json", table, str(block16_lut))
    payload = json.loads(path.read_text())
    del payload["params"]["reorder_graph"]
    path.write_text(json.dumps(payload))
    loaded, _ = load_predictor(path)
    assert loaded.reorder_graph is False
    assert loaded.predict_model(nets[3], x).total_ms == pytest.approx(
        p.predict_model(nets[3], x).total_ms
    )
    assert LatencyPredictor().reorder_graph is True  # new predictors count by graph
