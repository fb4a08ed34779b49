"""``lut check`` and resumed profiling on real backends (marker ``real``).

A tiny residual net at 16x16 on ONNX Runtime and eager PyTorch: each table takes seconds.
The checks use the library's own thresholds (``lut check``'s consistency bound); nothing
here is a timing typed into the test.
"""

from __future__ import annotations

import pytest
import torch
from nets import ResidualNet

from ttmpd.lut import LatencyTable, ProfileInterrupted, journal_path, profile_model
from ttmpd.lut._device import recheck_table
from ttmpd.profiler import BackendConfig, GridConfig, get_backend

pytestmark = pytest.mark.real

BACKENDS = ["onnxruntime", "torch-cpu"]
GRID = GridConfig(channel_step=8, off_grid_per_unit=2)
X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _backend(name: str):
    backend = get_backend(name, BackendConfig(threads=1))
    if not backend.is_available():
        pytest.skip(f"{name}: {backend.unavailable_reason()}")
    return backend


def _figures(check) -> str:
    return f"median ratio {check.median_ratio:.3f}, spread {check.spread:.3f}"


def _fresh_table(backend, out):
    torch.manual_seed(0)
    return profile_model(ResidualNet(c=16).eval(), X, backend, out, grid=GRID,
                         progress=False).table  # fmt: skip


#: Builds of a fresh table the acceptance test may try. A shared host's speed flips
#: between modes for seconds at a time; a table built, or checked, across a flip really has
#: rows that disagree, and the check rightly says so. A recheck that measures otherwise
#: than the build did (another backend, timing or thread setting) fails every build.
FRESH_TRIES = 3


@pytest.mark.parametrize("name", BACKENDS)
def test_lut_check_accepts_a_freshly_built_table(name, tmp_path):
    backend, verdicts = _backend(name), []
    for i in range(FRESH_TRIES):
        fresh = recheck_table(_fresh_table(backend, tmp_path / f"lut{i}.parquet"))
        verdicts.append(f"{fresh.verdict} ({_figures(fresh)})")
        # just measured: at most a uniform drift (a loaded host), never rows moving apart;
        # or a device too unsteady right now for the check to tell (it says so)
        if fresh.verdict in ("ok", "drifted", "unsteady"):
            return
    pytest.fail(f"every fresh table was called inconsistent: {verdicts}")


@pytest.mark.parametrize("name", BACKENDS)
def test_lut_check_catches_rows_that_drifted_apart(name, tmp_path):
    table = _fresh_table(_backend(name), tmp_path / "lut.parquet")
    # every other row (by latency) three times slower: what a table stitched together from
    # measurements at different times looks like
    frame = table.frame.copy()
    slow = frame["latency_ms"].rank(method="first").astype(int) % 2 == 0
    for column in ("latency_ms", "p10_ms", "p90_ms"):
        frame.loc[slow, column] *= 3
    figures = []
    for _ in range(3):  # a device too unsteady to judge right now says so: check again
        stitched = recheck_table(LatencyTable(frame, table.meta))
        figures.append(f"{stitched.verdict} ({_figures(stitched)})")
        if stitched.verdict != "unsteady":
            break
    assert stitched.verdict == "inconsistent", figures


@pytest.mark.parametrize("name", BACKENDS)
def test_interrupted_real_profiling_resumes_without_remeasuring(name, tmp_path):
    backend = _backend(name)
    net = ResidualNet(c=16).eval()
    built: list[str] = []
    real_runner = backend.unit_runner

    def counting_runner(unit):
        built.append(unit.key)
        if len(built) == stop_at:
            raise KeyboardInterrupt  # Ctrl-C while this configuration is being measured
        return real_runner(unit)

    backend.unit_runner = counting_runner
    stop_at = 0  # a whole run first, to know the grid
    full = profile_model(net, X, backend, tmp_path / "full.parquet", grid=GRID, rounds=1,
                         progress=False).table  # fmt: skip
    out, stop_at = tmp_path / "lut.parquet", len(built) + len(full) // 2
    with pytest.raises(ProfileInterrupted):
        profile_model(net, X, backend, out, grid=GRID, rounds=1, progress=False)
    assert journal_path(out).is_file() and not out.exists()
    kept = _journal_keys(journal_path(out))
    assert kept  # at least one finished chunk was journaled before Ctrl-C
    built.clear()
    resumed = profile_model(net, X, backend, out, grid=GRID, rounds=1, resume=True,
                            progress=False).table  # fmt: skip
    assert set(resumed.frame["key"]) == set(full.frame["key"])
    assert not kept & set(built)  # journaled rows are kept, not measured again
    # every row was kept or measured now (the per-call overhead probe is built too)
    assert set(full.frame["key"]) <= kept | set(built) and not journal_path(out).exists()


def _journal_keys(journal) -> set[str]:
    import json

    lines = journal.read_text().splitlines()[1:]  # the first line is the header
    return {json.loads(line)["key"] for line in lines if line.strip()}
