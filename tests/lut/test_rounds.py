"""Profiling measures each configuration in interleaved rounds and keeps the median."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from ttmpd.errors import LutError
from ttmpd.lut import LatencyTable, ProfileInterrupted, journal_path, profile_model
from ttmpd.lut._build import CHUNK
from ttmpd.profiler.backends.fake import FakeBackend, _timing, fake_latency_ms

#: per-round disturbance: round 1 lands in a burst of host load
FACTORS = (1.0, 10.0, 1.1)


class BurstyFake(FakeBackend):
    """The fake device, ``FACTORS[r]`` times slower on the r-th measurement of a config."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.interrupt_at = interrupt_at

    def measure(self, unit, timing=None):
        round_ = Counter(self.calls)[unit.key]
        self.calls.append(unit.key)
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        return _timing(FACTORS[round_ % len(FACTORS)] * fake_latency_ms(unit))


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 48, 3, padding=1), nn.ReLU(), nn.Conv2d(48, 48, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 10),
    ).eval()  # fmt: skip


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_rows_keep_the_median_of_interleaved_rounds(tmp_path):
    backend = BurstyFake()
    result = profile_model(_net(), _x(), backend, tmp_path / "t.parquet", progress=False)
    table = result.table
    assert len(table) > CHUNK  # more than one chunk
    assert len(backend.calls) == 3 * len(table)
    first = backend.calls[:CHUNK]
    assert backend.calls[CHUNK : 2 * CHUNK] == first == backend.calls[2 * CHUNK : 3 * CHUNK]
    assert len(set(first)) == CHUNK
    for config in table.configs():  # the median round (1.1x), not the burst (10x)
        assert table.lookup(config) == pytest.approx(1.1 * fake_latency_ms(config))


def test_interrupt_keeps_finished_chunks_only(tmp_path):
    out = tmp_path / "t.parquet"
    at = 3 * CHUNK + CHUNK // 2  # halfway through the second chunk's first round
    with pytest.raises(ProfileInterrupted):
        profile_model(_net(), _x(), BurstyFake(interrupt_at=at), out, progress=False)
    lines = journal_path(out).read_text().splitlines()
    assert len(lines) == 1 + CHUNK  # header + the first chunk
    resumed = BurstyFake()
    result = profile_model(_net(), _x(), resumed, out, resume=True, progress=False)
    assert result.reused == CHUNK and result.measured == len(result.table) - CHUNK
    assert len(LatencyTable.load(out)) == len(result.table)


def test_rounds_must_be_positive(tmp_path):
    with pytest.raises(LutError, match="rounds must be >= 1"):
        profile_model(_net(), _x(), FakeBackend(), tmp_path / "t.csv", rounds=0, progress=False)
    assert not list(tmp_path.iterdir())
