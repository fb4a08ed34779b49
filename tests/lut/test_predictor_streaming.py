"""Weight streaming in whole-model predictions, on the fake device with emulated caches."""

import json

import numpy as np
import pytest
import torch

from ttmpd.errors import InputError
from ttmpd.lut import (
    LatencyPredictor,
    LatencyTable,
    PruneSavings,
    configs_frame,
    load_predictor,
    profile_model,
    save_predictor,
)
from ttmpd.lut._features import weight_bytes
from ttmpd.profiler import GridConfig, extract_units, get_backend
from ttmpd.profiler._streaming import streaming_chain

CACHE_KIB = "4096"
#: (channels, layers): weights from 0.5 to 10.5 MB around the 4 MiB cache
CALIBRATION = [(128, 8), (160, 16), (192, 24), (224, 32), (256, 24), (256, 40)]
HELD_OUT = [(144, 20), (208, 28), (240, 36), (176, 40)]


@pytest.fixture
def cache_device(monkeypatch):
    monkeypatch.setenv("TTMPD_FAKE_CACHE_KIB", CACHE_KIB)
    return get_backend("fake")


@pytest.fixture
def cache_lut(cache_device, tmp_path):
    path = tmp_path / "cache.parquet"
    profile_model(streaming_chain(256, 2), torch.randn(1, 256, 1, 1), cache_device, path,
                  grid=GridConfig(channel_step=16), progress=False)  # fmt: skip
    return LatencyTable.load(path), path


def measured(device, shapes):
    models = [(streaming_chain(c, k), torch.randn(1, c, 1, 1)) for c, k in shapes]
    return models, [device.measure_model(m, x).median_ms for m, x in models]


def held_out_errors(predictor, device):
    models, truth = measured(device, HELD_OUT)
    predicted = [predictor.predict_model(m, x).total_ms for m, x in models]
    return np.abs(np.array(predicted) / np.array(truth) - 1)


def test_pricing_weight_streaming_predicts_models_beyond_the_cache(cache_device, cache_lut):
    table, _ = cache_lut
    assert table.meta.device_rules.streaming.streams  # the probe ran with the profile
    cal, y = measured(cache_device, CALIBRATION)
    on = LatencyPredictor(memory_pricing=True).fit(table).fit_calibration(cal, y)
    off = LatencyPredictor(memory_pricing=False).fit(table).fit_calibration(cal, y)
    assert on.memory_priced_ and not off.memory_priced_
    err_on, err_off = held_out_errors(on, cache_device), held_out_errors(off, cache_device)
    assert err_on.max() < 0.03
    assert err_off.max() > 2 * err_on.max()
    auto = LatencyPredictor(memory_pricing="auto").fit(table).fit_calibration(cal, y)
    assert auto.memory_priced_  # its leave-one-out error is the smaller one
    assert auto.calibration_loo_worst == pytest.approx(on.calibration_loo_worst)
    assert auto.calibration_loo_worst < off.calibration_loo_worst


def test_auto_leaves_streaming_out_where_it_does_not_help(cache_device, cache_lut):
    """Models that all fit the caches: the term is zero, the calibration the same."""
    table, _ = cache_lut
    cal, y = measured(cache_device, [(64, 2), (72, 3), (80, 2), (96, 3), (88, 2)])
    auto = LatencyPredictor(memory_pricing="auto").fit(table).fit_calibration(cal, y)
    assert not auto.memory_priced_


def test_memory_delta_is_zero_until_calibrated_and_follows_each_models_footprint(
    cache_device, cache_lut
):
    table, _ = cache_lut
    p = LatencyPredictor(memory_pricing=True).fit(table)
    small, big = streaming_chain(96, 2), streaming_chain(256, 40)
    savings = PruneSavings(p, big, torch.randn(1, 256, 1, 1))
    frame = savings._base_frame
    assert not p.memory_delta_ms(frame).any()  # the plain unit sum before a calibration
    cal, y = measured(cache_device, CALIBRATION)
    p.fit_calibration(cal, y)
    one = p.memory_delta_ms(frame)
    assert one.sum() > 0
    two = p.memory_delta_ms(frame.iloc[[*range(len(frame))] * 2], n_models=2)
    assert two == pytest.approx(np.concatenate([one, one]))
    # a model under the capacity pays nothing
    small_frame = PruneSavings(p, small, torch.randn(1, 96, 1, 1))._base_frame
    assert not p.memory_delta_ms(small_frame).any()
    assert savings.footprint_bytes == pytest.approx(40 * (256 * 256 + 256) * 4, rel=0.01)


def test_a_saved_calibration_keeps_its_streaming_choice(cache_device, cache_lut, tmp_path):
    table, lut = cache_lut
    cal, y = measured(cache_device, CALIBRATION)
    p = LatencyPredictor(memory_pricing=True).fit(table).fit_calibration(cal, y)
    path = save_predictor(p, tmp_path / "p.json", table, str(lut))
    loaded, _ = load_predictor(path)
    assert loaded.memory_priced_
    m, x = streaming_chain(184, 12), torch.randn(1, 184, 1, 1)
    assert loaded.predict_model(m, x).total_ms == pytest.approx(p.predict_model(m, x).total_ms)
    payload = json.loads(path.read_text())
    del payload["memory_priced"], payload["params"]["memory_pricing"]  # an older file
    path.write_text(json.dumps(payload))
    assert not load_predictor(path)[0].memory_priced_


def test_memory_pricing_true_needs_a_probed_streaming_cost(tmp_path):
    path = tmp_path / "plain.parquet"
    profile_model(streaming_chain(32, 2), torch.randn(1, 32, 1, 1), get_backend("fake"), path,
                  grid=GridConfig(channel_step=16), progress=False)  # fmt: skip
    with pytest.raises(InputError, match="memory_pricing=True"):
        LatencyPredictor(memory_pricing=True).fit(LatencyTable.load(path))


def test_resuming_a_table_from_before_the_probe_adds_its_streaming_rule(tmp_path, monkeypatch):
    path = tmp_path / "old.parquet"
    chain, x = streaming_chain(64, 2), torch.randn(1, 64, 1, 1)
    grid = GridConfig(channel_step=16)
    profile_model(chain, x, get_backend("fake"), path, grid=grid, progress=False)
    assert LatencyTable.load(path).meta.device_rules.streaming is None
    monkeypatch.setenv("TTMPD_FAKE_CACHE_KIB", CACHE_KIB)
    profile_model(chain, x, get_backend("fake"), path, grid=grid, resume=True, progress=False)
    rules = LatencyTable.load(path).meta.device_rules
    assert rules.streaming is not None and rules.streaming.streams


def half_rate(device, monkeypatch, shapes):
    """Models measured on a device whose streaming costs half the probed rate: the
    cache-free latency plus half of what the cache adds (the probe over-prices by 2x)."""
    models, cached = measured(device, shapes)
    monkeypatch.setenv("TTMPD_FAKE_CACHE_KIB", "0")
    _, free = measured(device, shapes)
    monkeypatch.setenv("TTMPD_FAKE_CACHE_KIB", CACHE_KIB)
    return models, [f + 0.5 * (c - f) for c, f in zip(cached, free, strict=True)]


def test_fit_scales_a_probed_streaming_rate_that_over_prices(cache_device, cache_lut, monkeypatch):
    table, _ = cache_lut
    cal, y = half_rate(cache_device, monkeypatch, CALIBRATION)
    held, truth = half_rate(cache_device, monkeypatch, HELD_OUT)

    def errors(predictor):
        predicted = [predictor.predict_model(m, x).total_ms for m, x in held]
        return np.abs(np.array(predicted) / np.array(truth) - 1)

    # the in-model weight cost, weight-driven too, would share the scale's work: left out
    fit = LatencyPredictor(memory_pricing="fit", weight_pricing=False).fit(table)
    fit = fit.fit_calibration(cal, y)
    on = LatencyPredictor(memory_pricing=True, weight_pricing=False).fit(table)
    on = on.fit_calibration(cal, y)
    assert fit.memory_priced_ and fit.memory_scale_ == pytest.approx(0.5, abs=0.15)
    assert on.memory_scale_ == 1.0
    assert errors(fit).max() < 0.03
    assert errors(on).max() > 2 * errors(fit).max()
    assert fit.calibration_loo_worst < on.calibration_loo_worst
    line = fit.describe_calibration()
    assert f", weight streaming at {fit.memory_scale_:.1f}x the probed rate; " in line
    off = LatencyPredictor(memory_pricing=False, weight_pricing=False).fit(table)
    off = off.fit_calibration(cal, y)
    assert "weight streaming" not in off.describe_calibration()
    # the fitted scale prices each unit's share
    frame = PruneSavings(fit, held[-1][0], held[-1][1])._base_frame
    assert on.memory_delta_ms(frame).sum() > 0
    assert fit.memory_delta_ms(frame) == pytest.approx(
        fit.memory_scale_ * on.memory_delta_ms(frame)
    )


def test_fit_leaves_streaming_unpriced_where_models_fit_the_cache(cache_device, cache_lut):
    table, _ = cache_lut
    cal, y = measured(cache_device, [(64, 2), (72, 3), (80, 2), (96, 3), (88, 2)])
    fit = LatencyPredictor(memory_pricing="fit").fit(table).fit_calibration(cal, y)
    assert not fit.memory_priced_ and fit.memory_scale_ == 0.0
    few = LatencyPredictor(memory_pricing="fit").fit(table)
    few.fit_calibration(*measured(cache_device, CALIBRATION[:3]))
    assert not few.memory_priced_  # too few models to choose a scale


def test_a_saved_fitted_scale_is_kept(cache_device, cache_lut, tmp_path, monkeypatch):
    table, lut = cache_lut
    cal, y = half_rate(cache_device, monkeypatch, CALIBRATION)
    p = LatencyPredictor(memory_pricing="fit").fit(table).fit_calibration(cal, y)
    loaded, _ = load_predictor(save_predictor(p, tmp_path / "p.json", table, str(lut)))
    assert loaded.memory_scale_ == p.memory_scale_ != 1.0
    m, x = streaming_chain(184, 12), torch.randn(1, 184, 1, 1)
    assert loaded.predict_model(m, x).total_ms == pytest.approx(p.predict_model(m, x).total_ms)


def test_memory_pricing_rejects_other_words(cache_lut):
    with pytest.raises(InputError, match="'auto', 'fit', True or False"):
        LatencyPredictor(memory_pricing="fitted").fit(cache_lut[0])


def test_a_unit_larger_than_the_cache_is_charged_only_what_it_did_not_pay_alone(
    cache_device, cache_lut, tmp_path
):
    table, lut = cache_lut
    cal, y = measured(cache_device, CALIBRATION)
    p = LatencyPredictor(memory_pricing=True).fit(table).fit_calibration(cal, y)
    old = LatencyPredictor(memory_pricing=True, memory_alone=False).fit(table)
    old.fit_calibration(cal, y)
    # one 1536 -> 1536 conv (9 MiB, beyond the 4 MiB cache alone) among small ones
    big = torch.nn.Sequential(streaming_chain(1536, 1), torch.nn.Conv2d(1536, 64, 1),
                              streaming_chain(64, 4))  # fmt: skip
    units = extract_units(big, torch.randn(1, 1536, 1, 1), p.fusion_).units
    frame = configs_frame([u.config for u in units])
    alone = p.rules_.streaming.missed_share(weight_bytes(frame))
    assert alone[0] > 0 and (alone[1:] == 0).all()
    assert p.memory_scale_ == old.memory_scale_ == 1.0
    new_delta, old_delta = p.memory_delta_ms(frame), old.memory_delta_ms(frame)
    assert new_delta[1:] == pytest.approx(old_delta[1:])
    assert new_delta[0] == pytest.approx(
        old_delta[0] * (1 - alone[0] / p.rules_.streaming.missed_share(weight_bytes(frame).sum()))
    )
    # saved and loaded with the predictor; a file from before loads the old charge
    path = save_predictor(p, tmp_path / "p.json", table, str(lut))
    assert load_predictor(path)[0].memory_alone
    payload = json.loads(path.read_text())
    del payload["params"]["memory_alone"]
    path.write_text(json.dumps(payload))
    assert not load_predictor(path)[0].memory_alone
