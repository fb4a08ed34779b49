"""Acceptance: an interrupted profiling run resumes without losing or re-measuring a
completed row.

Runs are interrupted in-process (a backend whose ``measure`` raises KeyboardInterrupt, as
Ctrl-C does) and for real (``python -m ttmpd profile`` killed with SIGKILL or SIGINT while
``TTMPD_FAKE_DELAY_MS`` slows it down), then resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from ttmpd.errors import LutError
from ttmpd.lut import LatencyTable, ProfileInterrupted, journal_path
from ttmpd.lut import profile_model as _profile_model
from ttmpd.models import load_model
from ttmpd.profiler import BackendConfig, GridConfig, UnitConfig, extract_units, grid_configs
from ttmpd.profiler.backends.fake import FakeBackend

SHAPE = (1, 3, 16, 16)


def profile_model(*args, **kwargs):
    """One round per configuration: these tests count measurements and journal rows one by
    one (interleaved rounds are tested in test_rounds.py)."""
    return _profile_model(*args, **{"rounds": 1, **kwargs})


SENTINEL_TIME = "2000-01-01T00:00:00+00:00"

FACTORY = """\
from torch import nn


def net(c=48):
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10),
    )
"""


def _net(c: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c, 10),
    ).eval()


def _input() -> torch.Tensor:
    return torch.randn(*SHAPE, generator=torch.Generator().manual_seed(0))


def _grid_keys(model: nn.Module) -> list[str]:
    """Keys of every configuration ``profile_model`` should measure (default grid)."""
    units = extract_units(model, _input(), FakeBackend().fusion).units
    return [c.key for c in grid_configs(units, GridConfig())]


class ScriptedFake(FakeBackend):
    """The fake backend, recording what it measures; Ctrl-C on the ``interrupt_at``-th call."""

    def __init__(self, interrupt_at: int | None = None, threads: int = 1) -> None:
        super().__init__(BackendConfig(threads=threads))
        self.interrupt_at = interrupt_at
        self.calls: list[str] = []

    def measure(self, unit: UnitConfig, timing=None):
        self.calls.append(unit.key)
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        return super().measure(unit, timing)


def _journal_rows(journal: Path) -> list[dict]:
    """Complete rows of a journal (header line and a partial last line excluded)."""
    text = journal.read_text()
    complete = text[: text.rfind("\n") + 1].splitlines()
    return [json.loads(line) for line in complete[1:]]


def _by_key(table: LatencyTable) -> dict[str, dict]:
    return {r["key"]: r for r in table.frame.to_dict("records")}


def _interrupted_run(model, out: Path, k: int, threads: int = 1, **kwargs) -> list[str]:
    """Profile until Ctrl-C on the k-th measurement; the keys measured before it."""
    backend = ScriptedFake(interrupt_at=k, threads=threads)
    with pytest.raises(ProfileInterrupted) as info:
        profile_model(model, _input(), backend, out, progress=False, **kwargs)
    assert info.value.exit_code == 130
    assert "--resume" in str(info.value)
    return backend.calls[: k - 1]


@pytest.fixture(autouse=True)
def _no_fake_delay(monkeypatch):
    monkeypatch.delenv("TTMPD_FAKE_DELAY_MS", raising=False)


def _no_temp_files(d: Path) -> bool:
    return not list(d.glob(".*.tmp"))


# ----- in-process Ctrl-C ---------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_ctrl_c_keeps_rows_and_resume_measures_only_the_rest(tmp_path, ext):
    model, out, k = _net(24), tmp_path / f"t.{ext}", 7
    keys = _grid_keys(model)
    total = len(keys)
    assert total > k

    done = _interrupted_run(model, out, k, model_name="net24")
    journal = journal_path(out)
    assert not out.exists()
    rows = _journal_rows(journal)
    assert [r["key"] for r in rows] == done and len(rows) == k - 1
    assert _no_temp_files(tmp_path)

    counter = ScriptedFake()
    result = profile_model(model, _input(), counter, out, resume=True, progress=False)
    assert result.measured == len(counter.calls) == total - (k - 1)
    assert result.reused == k - 1
    assert not set(counter.calls) & set(done)
    assert set(counter.calls) | set(done) == set(keys)

    table = LatencyTable.load(out)
    assert len(table) == total == table.frame["key"].nunique()
    assert set(table.frame["key"]) == set(keys)
    saved = _by_key(table)
    for row in rows:
        assert saved[row["key"]]["latency_ms"] == row["latency_ms"]
        assert saved[row["key"]]["measured_at"] == row["measured_at"]
    assert "net24" in table.meta.models
    assert not journal.exists()
    assert _no_temp_files(tmp_path)


def test_interrupt_before_any_row_resumes_from_scratch(tmp_path):
    model, out = _net(16), tmp_path / "t.parquet"
    assert _interrupted_run(model, out, 1) == []
    assert not out.exists() and _journal_rows(journal_path(out)) == []
    counter = ScriptedFake()
    result = profile_model(model, _input(), counter, out, resume=True, progress=False)
    assert result.measured == len(_grid_keys(model)) == len(LatencyTable.load(out))
    assert not journal_path(out).exists()


def test_without_resume_a_left_journal_is_refused(tmp_path):
    model, out = _net(16), tmp_path / "t.parquet"
    _interrupted_run(model, out, 4)
    before = journal_path(out).read_bytes()
    with pytest.raises(LutError, match="--resume"):
        profile_model(model, _input(), ScriptedFake(), out, progress=False)
    assert journal_path(out).read_bytes() == before
    assert not out.exists()


# ----- real interruption of the console script ----------------------------------------------
def _cli(tmp_path: Path, *extra: str, delay_ms: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("TTMPD_FAKE_DELAY_MS", None)
    if delay_ms:
        env["TTMPD_FAKE_DELAY_MS"] = str(delay_ms)
    argv = [sys.executable, "-m", "ttmpd", "profile", "--model", "net.py:net", "--input-shape",
            ",".join(map(str, SHAPE)), "--backend", "fake", "--out", "t.parquet",
            "--no-progress", "--rounds", "1", *extra]  # fmt: skip
    return subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_terminal_sigint,
    )


def _terminal_sigint() -> None:
    """In the child: SIGINT as a terminal delivers it (default disposition, not blocked).
    A child inherits ignored signals and the signal mask of the process that forks it, and
    earlier tests in the same pytest process (threads of native libraries) can leave
    SIGINT blocked: the child then never sees the Ctrl-C this test sends."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_rows(proc: subprocess.Popen, journal: Path, n: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"profiling ended (code {proc.returncode}) before {n} rows were journaled")
        if journal.exists() and len(_journal_rows(journal)) >= n:
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no {n} journaled rows within {timeout_s} s")


@pytest.mark.parametrize("how", ["sigkill", "sigint"])
def test_killed_cli_run_resumes_without_remeasuring(tmp_path, how):
    (tmp_path / "net.py").write_text(FACTORY)
    keys = _grid_keys(load_model(f"{tmp_path}/net.py:net"))
    total = len(keys)
    out, journal = tmp_path / "t.parquet", journal_path(tmp_path / "t.parquet")

    proc = _cli(tmp_path, delay_ms=30)
    try:
        _wait_for_rows(proc, journal, 5)
        if how == "sigkill":
            proc.kill()
        else:
            proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    if how == "sigkill":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, stderr
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "--resume" in lines[0], stderr
        assert "Traceback" not in stderr
    assert not out.exists()
    assert _no_temp_files(tmp_path)
    before = _journal_rows(journal)
    assert 5 <= len(before) < total
    assert len({r["key"] for r in before}) == len(before)

    # Stamp the journaled rows so that a re-measured row could not pass for the original.
    header, *lines = journal.read_text().splitlines()
    stamped = [json.loads(line) | {"measured_at": SENTINEL_TIME} for line in lines]
    journal.write_text("\n".join([header, *map(json.dumps, stamped)]) + "\n")

    resumed = _cli(tmp_path, "--resume", "--json")
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["measured"] + len(before) == total == summary["rows"]
    assert summary["reused"] == len(before)

    table = LatencyTable.load(out)
    assert len(table) == total and set(table.frame["key"]) == set(keys)
    saved = _by_key(table)
    for row in before:
        assert saved[row["key"]]["latency_ms"] == row["latency_ms"]
        assert saved[row["key"]]["measured_at"] == SENTINEL_TIME
    assert (table.frame["measured_at"] == SENTINEL_TIME).sum() == len(before)
    assert not journal.exists()
    assert _no_temp_files(tmp_path)


# ----- damaged journals ----------------------------------------------------------------------
def test_journal_with_truncated_last_line_resumes(tmp_path):
    model, out, k = _net(24), tmp_path / "t.parquet", 6
    total = len(_grid_keys(model))
    done = _interrupted_run(model, out, k)
    journal = journal_path(out)
    last = journal.read_text().splitlines()[-1]
    with open(journal, "a") as fh:  # a kill in the middle of writing the next row
        fh.write(last[: len(last) // 2])
    assert len(_journal_rows(journal)) == k - 1

    counter = ScriptedFake()
    result = profile_model(model, _input(), counter, out, resume=True, progress=False)
    assert result.measured == total - (k - 1)
    assert not set(counter.calls) & set(done)
    assert len(LatencyTable.load(out)) == total
    assert not journal.exists()


def test_journal_cut_inside_its_header_resumes_from_scratch(tmp_path):
    model, out = _net(16), tmp_path / "t.parquet"
    _interrupted_run(model, out, 3)
    journal = journal_path(out)
    header = journal.read_text().splitlines()[0]
    journal.write_text(header[: len(header) // 2])

    counter = ScriptedFake()
    result = profile_model(model, _input(), counter, out, resume=True, progress=False)
    assert result.measured == len(counter.calls) == len(_grid_keys(model))
    assert len(LatencyTable.load(out)) == result.measured
    assert not journal.exists()


# ----- resuming into tables of other settings or models -------------------------------------
@pytest.mark.parametrize("left", ["table", "journal", "both"])
def test_resume_with_other_settings_is_refused(tmp_path, left):
    out = tmp_path / "t.parquet"
    if left in ("table", "both"):
        backend = ScriptedFake(threads=2)
        profile_model(_net(16), _input(), backend, out, progress=False)
    if left in ("journal", "both"):
        # extending a saved table starts with the drift check's 16 anchor measurements
        _interrupted_run(_net(24), out, 4 + (16 if left == "both" else 0), threads=2, resume=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"table": {"t.parquet"}, "journal": {"t.parquet.journal"}}.get(
        left, {"t.parquet", "t.parquet.journal"}
    )

    backend = ScriptedFake(threads=1)
    with pytest.raises(LutError, match=r"threads \(2 vs 1\)") as info:
        profile_model(_net(24), _input(), backend, out, resume=True, progress=False)
    assert "\n" not in str(info.value)
    assert backend.calls == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_resume_into_a_complete_table_adds_only_new_configurations(tmp_path):
    out = tmp_path / "t.parquet"
    small, large = _net(16), _net(24)
    first = profile_model(small, _input(), ScriptedFake(), out, model_name="small", progress=False)
    old = _by_key(first.table)
    new_keys = _grid_keys(large)
    overlap = set(new_keys) & set(old)
    assert overlap and set(new_keys) - set(old)  # the test needs both kinds

    counter = ScriptedFake()
    result = profile_model(
        large, _input(), counter, out, resume=True, model_name="large", progress=False
    )
    # the drift check re-measures 16 stored rows before and after (not written again)
    n = result.drift.anchors
    anchors, measured = counter.calls[:n], counter.calls[n:-n]
    assert set(anchors) <= set(old) and n == min(16, len(old))
    assert counter.calls[-n:] == anchors
    assert sorted(measured) == sorted(set(new_keys) - set(old))
    assert result.measured == len(measured)
    assert result.reused == len(overlap)
    assert not result.drift.drifted  # the fake backend does not drift: rows kept as measured

    table = LatencyTable.load(out)
    assert set(table.frame["key"]) == set(old) | set(new_keys)
    assert len(table) == table.frame["key"].nunique()
    saved = _by_key(table)
    for key, row in old.items():
        assert saved[key]["latency_ms"] == row["latency_ms"]
        assert saved[key]["measured_at"] == row["measured_at"]
    assert table.meta.models == ("small", "large")
    assert not journal_path(out).exists()
