import numpy as np
import pytest
import torch
from nets import ResidualNet

from ttmpd.errors import InputError
from ttmpd.lut import LatencyPredictor, LatencyTable, profile_model, unit_inputs
from ttmpd.profiler import GridConfig, extract_units, get_backend
from ttmpd.pruning import (
    apply_plan,
    calibrate_predictor,
    calibration_round_to,
    calibration_variants,
    channel_groups,
    random_plan,
)


def test_calibration_on_pruned_variants_recovers_the_fake_overhead(tmp_path):
    x = torch.randn(1, 3, 16, 16)
    net = ResidualNet(c=32).eval()
    backend = get_backend("fake")
    table = profile_model(net, x, backend, tmp_path / "lut.parquet", progress=False,
                          grid=GridConfig(channel_step=2, off_grid_per_unit=4)).table  # fmt: skip
    variants = calibration_variants(net, x, n_variants=3, seed=1)
    assert len(variants) == 4 and variants[0] is net
    params = [sum(p.numel() for p in v.parameters()) for v in variants]
    assert all(p < params[0] for p in params[1:])
    predictor = LatencyPredictor().fit(table)
    measured = calibrate_predictor(predictor, net, x, backend, n_variants=3, seed=1)
    assert measured[0] == pytest.approx(backend.measure_model(net, x).median_ms)
    slope, _, offset = predictor.calibration_
    # fake whole model = 1.1 x Σ units + 0.01; the calibration counts units without t0
    n_units = len(extract_units(net, x).units)
    t0 = predictor.call_overhead_ms_
    assert t0 == LatencyTable.load(tmp_path / "lut.parquet").meta.device_rules.call_overhead_ms
    assert slope == pytest.approx(1.1, rel=0.05)
    assert offset == pytest.approx(0.01 + 1.1 * t0 * n_units, rel=0.1)


def _conv_widths(model) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_every_other_calibration_prune_is_aligned_to_round_to():
    x = torch.randn(1, 3, 16, 16)
    net = ResidualNet(c=32).eval()
    variants = calibration_variants(net, x, n_variants=4, seed=1, round_to=4)
    assert len(variants) == 5 and variants[0] is net
    aligned, unaligned = variants[1::2], variants[2::2]
    assert all(w % 4 == 0 for v in aligned for w in _conv_widths(v))
    assert all(any(w % 4 for w in _conv_widths(v)) for v in unaligned)
    plain = calibration_variants(net, x, n_variants=4, seed=1)
    assert [_conv_widths(v) for v in plain[2::2]] == [_conv_widths(v) for v in unaligned]
    assert any(w % 4 for v in plain[1::2] for w in _conv_widths(v))


def test_a_ratio_alignment_cannot_reach_is_pruned_unaligned():
    x = torch.randn(1, 3, 16, 16)
    net = ResidualNet(c=16).eval()
    # multiples of 16 leave a 16-channel group nothing to remove: every prune falls back
    variants = calibration_variants(net, x, n_variants=2, seed=1, round_to=16)
    assert all(any(w % 16 for w in _conv_widths(v)) for v in variants[1:])


def test_the_calibration_aligns_to_the_devices_blocked_rule(tmp_path, monkeypatch):
    x = torch.randn(1, 3, 16, 16)
    net = ResidualNet(c=16).eval()
    plain = LatencyPredictor().fit(profile_model(
        net, x, get_backend("fake"), tmp_path / "plain.parquet", progress=False,
        grid=GridConfig(channel_step=4)).table)  # fmt: skip
    assert calibration_round_to(plain) is None
    monkeypatch.setenv("TTMPD_FAKE_BLOCK", "8")
    table = profile_model(net, x, get_backend("fake"), tmp_path / "block8.parquet",
                          progress=False, grid=GridConfig(channel_step=4)).table  # fmt: skip
    blocked = LatencyPredictor().fit(table)
    assert calibration_round_to(blocked) == table.meta.device_rules.blocked.in_multiple == 4
    assert calibration_round_to(LatencyPredictor(blocked_layout=False).fit(table)) is None


def test_a_calibration_that_contradicts_itself_is_measured_again(tmp_path, monkeypatch, caplog):
    import ttmpd.pruning._calibrate as calibrate

    x = torch.randn(1, 3, 16, 16)
    net = ResidualNet(c=32).eval()
    backend = get_backend("fake")
    table = profile_model(net, x, backend, tmp_path / "lut.parquet", progress=False,
                          grid=GridConfig(channel_step=2, off_grid_per_unit=4)).table  # fmt: skip
    real, calls = calibrate.measure_models, []
    drifts = [[1.0, 1.5, 0.7, 1.3, 0.8], [1.0] * 5, [1.0, 2.0, 0.5, 2.0, 0.5]]

    def drifting(pairs, *args, **kwargs):  # the host drifted during the first measurement
        exact = real(pairs, *args, **kwargs)
        calls.append(exact)
        return [m * d for m, d in zip(exact, drifts[len(calls) - 1], strict=True)]

    monkeypatch.setattr(calibrate, "measure_models", drifting)
    predictor = LatencyPredictor().fit(table)
    measured = calibrate_predictor(predictor, net, x, backend, n_variants=4, seed=1, tries=3)
    assert len(calls) == 2  # the second measurement was steady: no third
    assert measured == calls[1]
    assert max(abs(predictor.calibration_loo_)) <= 0.10
    # one try only: the contradictory calibration is kept, with a warning that says so
    calls.clear()
    with caplog.at_level("WARNING"):
        calibrate_predictor(LatencyPredictor().fit(table), net, x, backend, n_variants=4,
                            seed=1)  # fmt: skip
    assert len(calls) == 1 and "worst leave-one-out error" in caplog.text
    # every measurement drifted: the steadiest of the three is kept, not the last
    calls.clear()
    drifts[:] = [[1.0, 2.0, 0.5, 2.0, 0.5], [1.0, 1.15, 0.9, 1.1, 0.95], [1.0, 1.5, 0.7, 1.3, 0.8]]
    kept = calibrate_predictor(LatencyPredictor().fit(table), net, x, backend, n_variants=4,
                               seed=1, tries=3)  # fmt: skip
    assert len(calls) == 3 and kept == [m * d for m, d in zip(calls[1], drifts[1], strict=True)]


@pytest.fixture
def block16(tmp_path, monkeypatch):
    """The fake device with a 16-channel blocked layout, whose whole models reorder only
    where layouts change, and its table of a 48-channel ResidualNet."""
    monkeypatch.setenv("TTMPD_FAKE_BLOCK", "16")
    x, net = torch.randn(1, 3, 16, 16), ResidualNet(c=48).eval()
    table = profile_model(net, x, get_backend("fake"), tmp_path / "lut.parquet", progress=False,
                          grid=GridConfig(channel_step=4, off_grid_per_unit=4)).table  # fmt: skip
    return net, x, table


def _prunes(net, x, specs):
    groups = channel_groups(net, x)
    return [apply_plan(net, x, random_plan(net, x, groups, ratio, seed=50 + i, round_to=step))
            for i, (ratio, step) in enumerate(specs)]  # fmt: skip


def test_per_unit_reorder_deltas_add_up_to_the_devices_whole_model_reorders(block16):
    """Exact up to per-tensor overheads where every conv runs blocked (the per-unit sum
    assumes each conv's producer does; an unblocked producer makes it over-charge)."""
    from ttmpd.lut._features import configs_frame, reorder_delta_ms
    from ttmpd.profiler.backends.fake import fake_latency_ms, fake_model_reorders_ms

    net, x, table = block16
    rule = table.meta.device_rules.blocked
    for model in [net, *_prunes(net, x, [(0.3, 16), (0.5, 8), (0.6, 4)])]:
        units = extract_units(model, x).units
        alone = sum(fake_latency_ms(u.config) - fake_latency_ms(u.config, reorders=False)
                    for u in units)  # fmt: skip
        truth = fake_model_reorders_ms(units) - alone
        predicted = reorder_delta_ms(configs_frame([u.config for u in units]), rule).sum()
        assert truth < 0  # chains of blocked convs reorder less than their units alone
        assert predicted == pytest.approx(truth, rel=0.05)


def test_graph_reorder_deltas_are_the_devices_whole_model_reorders(block16):
    """With the model's graph, exact on every prune, the ones breaking the chain included
    (where the per-unit sum over-charges)."""
    from ttmpd.lut._features import configs_frame, graph_reorder_delta_ms, reorder_delta_ms
    from ttmpd.profiler.backends.fake import fake_latency_ms, fake_model_reorders_ms

    net, x, table = block16
    rule = table.meta.device_rules.blocked
    prunes = _prunes(net, x, [(0.3, None), (0.5, None), (0.6, 4), (0.4, 8), (0.5, 16)])
    per_unit_off = []
    for model in [net, *prunes]:
        units = extract_units(model, x).units
        row = {u.index: k for k, u in enumerate(units)}
        inputs = [[row.get(i, -1) for i in u.inputs] for u in units]
        alone = sum(fake_latency_ms(u.config) - fake_latency_ms(u.config, reorders=False)
                    for u in units)  # fmt: skip
        truth = fake_model_reorders_ms(units) - alone
        frame = configs_frame([u.config for u in units])
        assert graph_reorder_delta_ms(frame, inputs, rule).sum() == pytest.approx(truth, abs=1e-9)
        per_unit_off.append(abs(reorder_delta_ms(frame, rule).sum() - truth))
    assert max(per_unit_off) > 1e-4  # the per-unit sum misses some prune: this test can tell
    with pytest.raises(InputError, match="one input list per unit"):
        graph_reorder_delta_ms(configs_frame([u.config for u in units]), inputs[:-1], rule)


def test_pricing_reorders_predicts_prunes_that_break_the_blocked_chain(block16):
    """Prunes aligned to the block keep the chain, unaligned ones break it: a slope per
    conv kind cannot price both; the probed reorder cost can."""
    net, x, table = block16
    backend = get_backend("fake")
    held_out = _prunes(net, x, [(0.3, None), (0.5, None), (0.6, None), (0.3, 16), (0.5, 16),
                                (0.4, 8), (0.6, 4)])  # fmt: skip
    truth = np.array([backend.measure_model(m, x).median_ms for m in held_out])
    truth /= backend.measure_model(net, x).median_ms
    worst = {}
    for on in (True, False):
        predictor = LatencyPredictor(reorder_pricing=on).fit(table)
        assert predictor.reorder_pricing_ is on
        calibrate_predictor(predictor, net, x, backend, n_variants=6, seed=1)
        assert predictor.reorders_priced_ is on
        original = predictor.predict_model(net, x).total_ms
        fraction = np.array([predictor.predict_model(m, x).total_ms for m in held_out])
        worst[on] = np.abs(fraction / original / truth - 1).max()
    assert worst[True] < 0.10 and 1.5 * worst[True] < worst[False], worst


def test_graph_reorders_predict_every_prune_of_the_fake_device(block16):
    """``reorder_graph``: whole-model predictions count reorders from the model's graph,
    the device's own accounting, on prunes that break the blocked chain as well."""
    net, x, table = block16
    backend = get_backend("fake")
    held_out = _prunes(net, x, [(0.3, None), (0.5, None), (0.6, None), (0.4, 8), (0.6, 4)])
    truth = np.array([backend.measure_model(m, x).median_ms for m in held_out])
    errors = {}
    for graph in (True, False):
        predictor = LatencyPredictor(reorder_graph=graph).fit(table)
        calibrate_predictor(predictor, net, x, backend, n_variants=6, seed=1)
        predicted = np.array([predictor.predict_model(m, x).total_ms for m in held_out])
        errors[graph] = np.abs(predicted / truth - 1).max()
        assert predictor.get_params()["reorder_graph"] is graph
    assert errors[True] < 0.02 and errors[True] < errors[False], errors


def test_the_search_prices_a_state_as_the_model_prediction_with_graph_reorders(block16):
    """``reorder_graph``: the search's whole-state pricing (one graph for every prune)
    equals the prediction of the pruned model, on a count that breaks the blocked chain."""
    from ttmpd.lut import PruneSavings
    from ttmpd.pruning import plan_from_removed

    net, x, table = block16
    predictor = LatencyPredictor(reorder_graph=True).fit(table)
    calibrate_predictor(predictor, net, x, get_backend("fake"), n_variants=6, seed=1)
    savings = PruneSavings(predictor, net, x)
    groups = [g for g in channel_groups(net, x) if g.prunable]
    states, predicted = [], []
    for k in (3, 16, 0):  # 45 channels leave the chain, 32 keep it
        removed = {g.id: list(range(k)) for g in groups}
        pruned = apply_plan(net, x, plan_from_removed(groups, removed, model=net)) if k else net
        states.append({g.id: k for g in groups})
        assert set(states[-1]) <= set(savings.groups)
        predicted.append(predictor.predict_model(pruned, x).total_ms)
    # priced together, as the search prices its candidates: one graph, stacked prunes
    assert savings.latencies(states) == pytest.approx(predicted, rel=1e-9)


@pytest.mark.parametrize("branch", [16, 12])
def test_graph_reorders_follow_a_concat_of_whole_blocks(monkeypatch, branch):
    """A concat of two blocked branches stays blocked when each fills whole blocks (16 on
    this fake device) and leaves the blocked layout when not: the graph count is the
    device's own either way."""
    from ttmpd.lut._features import configs_frame, graph_reorder_delta_ms
    from ttmpd.profiler.backends.fake import fake_latency_ms, fake_model_reorders_ms

    monkeypatch.setenv("TTMPD_FAKE_BLOCK", "16")
    rule = get_backend("fake").probe_rules().blocked

    class Inception(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 32, 3, padding=1)
            self.a = torch.nn.Conv2d(32, branch, 1)
            self.b = torch.nn.Conv2d(32, branch, 3, padding=1)
            self.head = torch.nn.Conv2d(2 * branch, 32, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.stem(x))
            y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
            return self.head(y).mean((2, 3))

    model, x = Inception().eval(), torch.randn(1, 3, 16, 16)
    units = extract_units(model, x).units
    assert any(u.config.op == "cat" for u in units)
    alone = sum(fake_latency_ms(u.config) - fake_latency_ms(u.config, reorders=False)
                for u in units)  # fmt: skip
    frame = configs_frame([u.config for u in units])
    delta = graph_reorder_delta_ms(frame, unit_inputs(units), rule).sum()
    truth = fake_model_reorders_ms(units) - alone
    assert delta == pytest.approx(truth, abs=1e-9)
