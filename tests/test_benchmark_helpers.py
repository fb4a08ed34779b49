"""Helpers of the benchmarks in benchmarks/ (the benchmarks themselves measure; not in CI)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nets import ResidualNet
from torch import nn

from ttmpd.profiler import extract_units, get_backend

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str, monkeypatch: pytest.MonkeyPatch):
    """benchmarks/<name>.py as a module (its sibling imports need benchmarks/ on the path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids).mean(dim=1)


def test_example_input_images_and_token_ids(monkeypatch):
    lp = _load("latency_prediction", monkeypatch)
    images = lp.example_input(ResidualNet(), (1, 3, 8, 8), seed=1)
    assert images.dtype == torch.float32 and images.shape == (1, 3, 8, 8)
    assert torch.equal(images, lp.example_input(ResidualNet(), (1, 3, 8, 8), seed=1))
    ids = lp.example_input(Tokens(), (2, 16), seed=0)
    assert ids.dtype == torch.int64 and ids.shape == (2, 16)
    assert int(ids.min()) >= 0 and int(ids.max()) < 50


def test_metrics_median_error(monkeypatch):
    lp = _load("latency_prediction", monkeypatch)
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    m = lp.metrics(measured * np.array([1.02, 0.9, 1.3, 1.0]), measured)
    assert m["median_ape_pct"] == pytest.approx(6.0)  # |err| 2, 10, 30, 0 -> median 6
    assert m["within10_pct"] == pytest.approx(75.0)
    assert m["mape_pct"] == pytest.approx(10.5)


def test_coverage_row_on_fake_backend(monkeypatch, tmp_path):
    cov = _load("coverage", monkeypatch)
    model, x = ResidualNet().eval(), torch.randn(1, 3, 16, 16)
    backend = get_backend("fake")
    row = cov.coverage_row(model, x, backend, tmp_path / "own.parquet")
    units = extract_units(model, x, backend.fusion).units
    assert row["units"] == len(units)
    assert row["uncovered_ops"] == 0 and row["uncovered"] == ""
    # the fake backend measures a whole model as 1.1 x its unit sum + 0.01 ms
    assert row["whole_ms"] == pytest.approx(1.1 * row["unit_sum_ms"] + 0.01)
    assert row["share"] == pytest.approx(row["unit_sum_ms"] / row["whole_ms"])
    assert row["whole_spread_pct"] == pytest.approx(0.0)
    assert row["share_p10"] == pytest.approx(row["share"])  # fake timings have no spread
    assert math.isnan(row["whole_cpu_ms"])  # the fake backend runs nothing to time
    assert (tmp_path / "own.parquet").exists()


def test_uncovered_counts_sorted_with_counts(monkeypatch):
    cov = _load("coverage", monkeypatch)

    class Op:
        def __init__(self, aten: str) -> None:
            self.aten = aten

    ops = [Op("aten.roll"), Op("aten.pad"), Op("aten.roll")]
    assert cov.uncovered_counts(ops) == "aten.pad x1, aten.roll x2"
    assert cov.uncovered_counts([]) == ""
