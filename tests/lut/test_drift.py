"""Extending a LUT after the device's timing drifted keeps old and new rows comparable."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from ttmpd.errors import InputError
from ttmpd.lut import LatencyTable, ProfileInterrupted, profile_model
from ttmpd.lut._drift import (
    CONSISTENCY,
    NOISE_MARGIN,
    DriftMap,
    anchor_configs,
    check_table,
    fit_drift,
    remeasure,
)
from ttmpd.profiler.backends.fake import FakeBackend, _timing, fake_latency_ms


def _net(c: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10),
    ).eval()  # fmt: skip


class SlowerFake(FakeBackend):
    """The fake device after drift: ``now = 1.5 · then + 0.003 ms`` (overhead grew too)."""

    def measure(self, unit, timing=None):
        return _timing(1.5 * fake_latency_ms(unit) + 0.003)


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_extension_after_drift_maps_new_rows_onto_the_old_time_base(tmp_path, caplog):
    out = tmp_path / "t.parquet"
    first = profile_model(_net(16), _x(), FakeBackend(), out, progress=False)
    old = {r["key"]: r["latency_ms"] for r in first.table.frame.to_dict("records")}
    with caplog.at_level(logging.WARNING, logger="ttmpd.lut._build"):
        result = profile_model(_net(24), _x(), SlowerFake(), out, resume=True, progress=False)
    assert result.drift is not None and result.drift.drifted
    assert result.drift.median_ratio > 1.5
    assert result.drift.slope == pytest.approx(1 / 1.5, rel=1e-6)
    assert "Re-profile into a new file" in caplog.text
    table = LatencyTable.load(out)
    configs = {c.key: c for c in table.configs()}
    new = [k for k in configs if k not in old]
    assert new
    for key in new:  # as if measured by the undrifted device
        row = table.frame.set_index("key").loc[key]
        assert row["latency_ms"] == pytest.approx(fake_latency_ms(configs[key]), rel=1e-6)
        assert row["p10_ms"] <= row["latency_ms"] <= row["p90_ms"]
    for key, ms in old.items():
        assert table.lookup(configs[key]) == ms


def test_no_drift_keeps_rows_as_measured(tmp_path):
    out = tmp_path / "t.parquet"
    profile_model(_net(16), _x(), FakeBackend(), out, progress=False)
    result = profile_model(_net(24), _x(), FakeBackend(), out, resume=True, progress=False)
    assert result.drift is not None and not result.drift.drifted
    assert result.drift.median_ratio == pytest.approx(1.0)


def test_a_burst_during_one_check_maps_nothing(tmp_path, caplog):
    out = tmp_path / "t.parquet"
    first = profile_model(_net(16), _x(), FakeBackend(), out, progress=False)
    n_anchors = len(anchor_configs(first.table))

    class BurstAtStart(FakeBackend):  # slow only while the first check runs (3 rounds)
        calls = 0

        def measure(self, unit, timing=None):
            BurstAtStart.calls += 1
            slow = BurstAtStart.calls <= 3 * n_anchors
            return _timing(fake_latency_ms(unit) * (1.5 if slow else 1.0))

    with caplog.at_level(logging.WARNING, logger="ttmpd.lut._build"):
        result = profile_model(_net(24), _x(), BurstAtStart(), out, resume=True, progress=False)
    assert result.drift.before_ratio == pytest.approx(1.5)
    assert result.drift.after_ratio == pytest.approx(1.0)
    assert result.drift.drifted and not result.drift.steady
    assert "kept as measured" in caplog.text
    table = LatencyTable.load(out)
    for config in table.configs():
        assert table.lookup(config) == pytest.approx(fake_latency_ms(config))


def _stored(tmp_path):
    table = profile_model(_net(24), _x(), FakeBackend(), tmp_path / "t.csv", progress=False).table
    anchors = anchor_configs(table, 16)
    return table, anchors, np.array([table.lookup(c) for c in anchors])


def test_anchors_span_the_table_and_the_fit_survives_one_disturbed_anchor(tmp_path):
    table, anchors, stored = _stored(tmp_path)
    assert len(anchors) == 16 and stored.min() == table.frame["latency_ms"].min()
    assert stored.max() == table.frame["latency_ms"].max()
    now = 2.0 * stored
    now[5] *= 10.0  # one anchor caught in a burst
    drift = fit_drift(stored, now, now)
    assert drift.slope == pytest.approx(0.5, rel=1e-6) and abs(drift.offset_ms) < 1e-9
    assert drift.before_ratio == pytest.approx(2.0) and drift.steady


def test_checks_must_agree_to_be_steady():
    stored = np.linspace(0.01, 0.1, 16)
    assert fit_drift(stored, 1.3 * stored, 1.25 * stored).steady
    assert not fit_drift(stored, 1.3 * stored, 1.0 * stored).steady  # a passing burst
    assert not fit_drift(stored, 1.3 * stored, 0.8 * stored).steady  # opposite sides
    assert not fit_drift(stored, 1.6 * stored, 1.3 * stored).steady  # disagree by 23%


def test_mapping_keeps_latencies_positive():
    mapping = DriftMap(slope=1.0, offset_ms=-1.0, before_ratio=2.0, after_ratio=2.0, anchors=16)
    assert mapping.drifted and mapping.steady and mapping.apply(0.5) > 0
    assert np.isclose(mapping.apply(3.0), 2.0)


def test_ctrl_c_during_the_drift_check_writes_nothing(tmp_path):
    out = tmp_path / "t.parquet"
    profile_model(_net(16), _x(), FakeBackend(), out, progress=False)
    before = out.read_bytes()

    class Interrupted(FakeBackend):
        def measure(self, unit, timing=None):
            raise KeyboardInterrupt

    with pytest.raises(ProfileInterrupted, match="drift check; nothing was written"):
        profile_model(_net(24), _x(), Interrupted(), out, resume=True, progress=False)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "t.parquet"
    ]


def test_remeasure_takes_the_median_of_interleaved_sweeps(tmp_path):
    table, anchors, stored = _stored(tmp_path)
    calls = []

    def now(c):  # the whole second sweep lands in a burst of host load
        calls.append(c.key)
        return table.lookup(c) * (10.0 if (len(calls) - 1) // 16 == 1 else 1.0)

    assert np.allclose(remeasure(anchors, now, rounds=3), stored)
    assert len(calls) == 48 and calls[:16] == calls[16:32] == calls[32:]


def test_table_check_tells_a_uniform_drift_from_rows_that_no_longer_agree(tmp_path):
    table, _, _ = _stored(tmp_path)
    same = check_table(table, table.lookup, rounds=1)
    assert same.verdict == "ok" and same.median_ratio == pytest.approx(1.0) and same.spread == 0
    slower = check_table(table, lambda c: 1.3 * table.lookup(c), rounds=1)
    assert slower.verdict == "drifted" and slower.median_ratio == pytest.approx(1.3)
    keys = sorted(table.frame["key"])  # half the rows drifted, half did not: a stale batch
    stale = set(keys[::2])
    mixed = check_table(table, lambda c: table.lookup(c) * (1.3 if c.key in stale else 1.0))
    assert mixed.verdict == "inconsistent" and mixed.spread > 0.2
    assert mixed.noise == 0 and mixed.bound == CONSISTENCY  # steady sweeps: the goal decides
    with pytest.raises(InputError, match=">= 3 anchor rows"):
        check_table(table, table.lookup, n_anchors=2)


def _flipping(table, keys_slow: set[str], factor: float):
    """A measure function whose device runs the rows in ``keys_slow`` ``factor`` times
    slower on every other sweep (a host whose speed flips for seconds at a time)."""
    calls: list[str] = []
    n = len(anchor_configs(table))

    def measure(c):
        calls.append(c.key)
        sweep = (len(calls) - 1) // n
        return table.lookup(c) * (factor if sweep % 2 == 1 and c.key in keys_slow else 1.0)

    return measure


def test_table_check_measures_its_own_noise_floor_from_its_sweeps(tmp_path):
    table, _, _ = _stored(tmp_path)
    keys = [c.key for c in anchor_configs(table)]
    # sweeps 0 and 2 agree with the table; sweep 1 runs half the anchors 1.5x slower
    check = check_table(table, _flipping(table, set(keys[::2]), 1.5), rounds=3)
    assert len(check.sweeps_ms) == 3 and check.now_ms == pytest.approx(check.stored_ms)
    # pairs (0,1), (0,2), (1,2): spreads 0.5, 0, 0.5 -> median 0.5
    assert check.noise == pytest.approx(0.5)
    assert check.bound == pytest.approx(NOISE_MARGIN * 0.5)
    # the median of the sweeps matches the table, yet this check cannot resolve 10% now
    assert check.spread == 0 and check.verdict == "unsteady"


def test_rows_far_beyond_the_noise_floor_are_inconsistent_even_on_an_unsteady_device(tmp_path):
    table, _, _ = _stored(tmp_path)
    keys = [c.key for c in anchor_configs(table)]
    flip = _flipping(table, set(keys[::2]), 1.1)  # sweeps 10% apart on half the rows

    def stale(c):  # and the other half of the rows stored 3x too fast
        return flip(c) * (3.0 if c.key in set(keys[1::2]) else 1.0)

    check = check_table(table, stale, rounds=3)
    assert 0 < check.noise < 0.2 and check.spread > 1.0
    assert check.verdict == "inconsistent"
