"""Extending a LUT after the device's timing drifted keeps old and new rows comparable."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from ttmpd.lut import LatencyTable, ProfileInterrupted, profile_model
from ttmpd.lut._drift import DriftMap, anchor_configs, drift_map
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


def test_drift_map_survives_one_disturbed_anchor(tmp_path):
    table = profile_model(_net(24), _x(), FakeBackend(), tmp_path / "t.csv", progress=False).table
    anchors = anchor_configs(table, 16)
    stored = sorted(table.lookup(c) for c in anchors)
    assert len(anchors) == 16 and stored[0] == table.frame["latency_ms"].min()
    assert stored[-1] == table.frame["latency_ms"].max()
    burst = anchors[5].key

    def now(c):
        return 2.0 * table.lookup(c) * (10.0 if c.key == burst else 1.0)

    drift = drift_map(table, now)
    assert drift.slope == pytest.approx(0.5, rel=1e-6) and abs(drift.offset_ms) < 1e-9
    assert drift.median_ratio == pytest.approx(2.0)


def test_drift_map_needs_three_rows_and_keeps_latencies_positive():
    empty = LatencyTable.empty(FakeBackend().fingerprint())
    assert drift_map(empty, lambda c: 1.0) is None
    mapping = DriftMap(slope=1.0, offset_ms=-1.0, median_ratio=2.0, anchors=16)
    assert mapping.drifted and mapping.apply(0.5) > 0
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


def test_drift_map_takes_the_median_of_interleaved_sweeps(tmp_path):
    table = profile_model(_net(24), _x(), FakeBackend(), tmp_path / "t.csv", progress=False).table
    calls = []

    def now(c):  # the whole second sweep lands in a burst of host load
        calls.append(c.key)
        sweep = (len(calls) - 1) // 16
        return table.lookup(c) * (10.0 if sweep == 1 else 1.0)

    drift = drift_map(table, now, n_anchors=16, rounds=3)
    assert len(calls) == 48 and calls[:16] == calls[16:32] == calls[32:]
    assert drift.median_ratio == pytest.approx(1.0) and not drift.drifted
