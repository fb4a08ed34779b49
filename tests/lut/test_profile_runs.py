"""Profiling with backends that *run* units: runners kept across rounds, rounds that
settle early, the plan and its ETA, resume; and the staircase grid as the default."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from ttmpd.cli import main as cli_main
from ttmpd.lut import LatencyTable, ProfileInterrupted, journal_path, profile_model
from ttmpd.lut._build import CHUNK, PILOT
from ttmpd.profiler import BackendBase, GridConfig, extract_units, grid_configs
from ttmpd.profiler.backends.fake import FakeBackend, fake_latency_ms


class RunnerFake(FakeBackend):
    """The fake device measured through the shared timing loop: each runner sleeps not,
    it reports ``fake_latency_ms`` per call. Counts runner builds; Ctrl-C on build k."""

    measure = BackendBase.measure  # time runners, as real backends do

    def __init__(self, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.built: list[str] = []
        self.calls: dict[str, int] = {}
        self.interrupt_at = interrupt_at

    def unit_runner(self, unit):
        self.built.append(unit.key)
        if len(self.built) == self.interrupt_at:
            raise KeyboardInterrupt
        latency = fake_latency_ms(unit)

        def run(number: int) -> float:
            self.calls[unit.key] = self.calls.get(unit.key, 0) + 1
            return latency * number

        return run


def _net(c: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(c, 10),
    ).eval()  # fmt: skip


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _keys(model: nn.Module, backend: FakeBackend) -> list[str]:
    units = extract_units(model, _x(), backend.fusion).units
    return [c.key for c in grid_configs(units, GridConfig(), backend.probe_rules())]


def test_each_configuration_is_built_once_and_settles_in_two_rounds(tmp_path):
    backend = RunnerFake()
    result = profile_model(_net(), _x(), backend, tmp_path / "t.parquet", progress=False)
    keys = _keys(_net(), backend)
    assert len(keys) > PILOT + CHUNK  # pilot, and more than one chunk after it
    assert sorted(backend.built) == sorted(keys)  # one runner per configuration
    table = result.table
    assert [*table.frame["key"]] == keys  # grid order, although the pilot ran first
    for config in table.configs():  # steady runners: two agreeing rounds pooled
        assert table.lookup(config) == pytest.approx(fake_latency_ms(config))
    assert set(table.frame["samples"]) == {2 * 7}
    assert result.measured == len(keys) and result.timed_s > 0


def test_plan_comes_before_measuring_and_the_eta_after_a_spread_pilot(tmp_path):
    backend, plans = RunnerFake(), []
    profile_model(_net(), _x(), backend, tmp_path / "t.csv", progress=False,
                  on_plan=lambda p: plans.append((len(backend.built), p)))  # fmt: skip
    keys = _keys(_net(), backend)
    (built_before, plan), (built_after, timed) = plans
    assert built_before == 0 and plan.eta_s is None
    assert (plan.planned, plan.reused, plan.pilot, plan.rounds) == (len(keys), 0, PILOT, 3)
    assert built_after == PILOT and timed.eta_s >= 0 and timed.rate > 0
    pilot = [keys.index(k) for k in backend.built[:PILOT]]
    assert pilot[0] == 0 and pilot[-1] == len(keys) - 1  # spread over the whole grid
    assert max(b - a for a, b in itertools.pairwise(pilot)) <= len(keys) / PILOT + 1


def test_interrupted_runner_run_resumes_without_remeasuring(tmp_path):
    out = tmp_path / "t.parquet"
    at = PILOT + CHUNK + 5  # in the chunk after the pilot
    with pytest.raises(ProfileInterrupted):
        profile_model(_net(), _x(), RunnerFake(interrupt_at=at), out, progress=False)
    rows = [json.loads(line) for line in journal_path(out).read_text().splitlines()[1:]]
    assert len(rows) == PILOT + CHUNK  # whole chunks only
    resumed = RunnerFake()
    result = profile_model(_net(), _x(), resumed, out, resume=True, progress=False)
    keys = _keys(_net(), resumed)
    assert result.reused == len(rows) and result.measured == len(keys) - len(rows)
    assert not set(resumed.built) & {r["key"] for r in rows}
    assert set(LatencyTable.load(out).frame["key"]) == set(keys)


def test_default_grid_follows_the_probed_block(tmp_path, monkeypatch):
    sizes = {}
    for block in ("0", "16"):
        monkeypatch.setenv("TTMPD_FAKE_BLOCK", block)
        backend = FakeBackend()
        table = profile_model(_net(), _x(), backend, tmp_path / f"{block}.csv",
                              progress=False).table  # fmt: skip
        assert [*table.frame["key"]] == _keys(_net(), backend)
        assert table.meta.grid["channel_step"] is None
        sizes[block] = len(table)
    assert sizes["16"] < sizes["0"]  # steps of 16 channels: half the counts per conv side


FACTORY = """\
from torch import nn


def net():
    return nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 24, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10))
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_prints_the_plan_unless_quiet(tmp_path, capsys, monkeypatch, quiet):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(FACTORY)
    argv = ["profile", "--model", "net.py:net", "--input-shape", "1,3,8,8", "--backend", "fake",
            "--out", "t.csv", "--json", *(["--no-progress"] if quiet else [])]  # fmt: skip
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    plan = [line for line in captured.err.splitlines() if line.startswith("planned")]
    if quiet:
        assert plan == []
    else:
        assert len(plan) == 1 and f"planned {summary['measured']} configurations" in plan[0]
        assert "staircase grid" in plan[0]
    assert summary["entries_per_s"] > 0
