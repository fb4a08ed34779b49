"""What a unit pays measured alone and not inside a model (the device's isolation costs),
priced in whole-model predictions: on the fake device that emulates OpenVINO's residual
convs (``TTMPD_FAKE_RESIDUAL_ALONE_US``)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from ttmpd.lut import LatencyPredictor, LatencyTable, profile_model
from ttmpd.profiler import GridConfig, extract_units, get_backend


class Blocks(nn.Module):
    """A stem conv, ``residual`` blocks with a skip connection and ``plain`` ones without,
    at ``channels`` wide: models whose share of residual convs differs."""

    def __init__(self, channels: int, residual: int, plain: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU())  # fmt: skip
        self.residual = nn.ModuleList(self._block(channels) for _ in range(residual))
        self.plain = nn.ModuleList(self._block(channels) for _ in range(plain))

    @staticmethod
    def _block(c: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                             nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c))  # fmt: skip

    def forward(self, x):
        x = self.stem(x)
        for block in self.residual:
            x = torch.relu(block(x) + x)
        for block in self.plain:
            x = torch.relu(block(x))
        return x


#: (channels, residual blocks, plain blocks)
CALIBRATION = [(8, 1, 4), (16, 4, 1), (24, 2, 2), (8, 5, 0), (16, 0, 5), (24, 3, 1)]
HELD_OUT = [(16, 6, 0), (8, 0, 6), (24, 5, 0), (16, 1, 5)]


@pytest.fixture
def residual_device(monkeypatch):
    monkeypatch.setenv("TTMPD_FAKE_RESIDUAL_ALONE_US", "9")
    return get_backend("fake")


def models(shapes):
    torch.manual_seed(0)
    return [(Blocks(*s).eval(), torch.randn(1, 3, 16, 16)) for s in shapes]


def errors(predictor, device):
    held = models(HELD_OUT)
    truth = np.array([device.measure_model(m, x).median_ms for m, x in held])
    predicted = np.array([predictor.predict_model(m, x).total_ms for m, x in held])
    return np.abs(predicted / truth - 1)


def test_residual_convs_priced_as_a_model_runs_them(residual_device, tmp_path):
    path = tmp_path / "residual.parquet"
    net, x = models([(24, 1, 1)])[0]
    units = extract_units(net, x, residual_device.fusion).units
    assert any(u.config.op == "conv" and u.config.n_inputs == 2 for u in units)
    profile_model(net, x, residual_device, path, grid=GridConfig(channel_step=8),
                  progress=False)  # fmt: skip
    table = LatencyTable.load(path)
    (cost,) = table.meta.device_rules.isolation  # probed with the profile, kept in the table
    assert cost.overhead_ms == pytest.approx(0.009, rel=0.05)
    cal = models(CALIBRATION)
    y = [residual_device.measure_model(m, x).median_ms for m, x in cal]
    # the in-model weight cost would absorb part of the unpriced isolation cost: left out
    # of both, the comparison is the isolation cost's alone
    priced = LatencyPredictor(weight_pricing=False).fit(table).fit_calibration(cal, y)
    unpriced = LatencyPredictor(reorder_pricing=False, weight_pricing=False).fit(table)
    unpriced = unpriced.fit_calibration(cal, y)
    assert priced.reorders_priced_ and not unpriced.reorders_priced_
    err_priced, err_unpriced = errors(priced, residual_device), errors(unpriced, residual_device)
    assert err_priced.max() < 0.02
    assert err_unpriced.max() > 3 * err_priced.max()
    # alone, the residual conv costs what the device measured; in a model, less by the cost
    frame = table.frame[table.frame["n_inputs"] == 2]
    delta = priced.reorder_delta_ms(frame)
    expected = cost.overhead_ms + cost.ns_per_element * frame["output_elements"] * 1e-6
    assert delta == pytest.approx(-expected.to_numpy())


def test_resuming_a_table_from_before_the_probe_adds_its_isolation_cost(tmp_path, monkeypatch):
    path = tmp_path / "old.parquet"
    net, x = models([(8, 1, 0)])[0]
    grid = GridConfig(channel_step=8)
    monkeypatch.setenv("TTMPD_FAKE_RESIDUAL_ALONE_US", "9")
    device = get_backend("fake")
    profile_model(net, x, device, path, grid=grid, progress=False)
    table = LatencyTable.load(path)
    rules = table.meta.rules
    del rules["isolation"]  # as a table written before the probe holds them
    old = LatencyTable(table.frame, replace(table.meta, rules=rules))
    old.save(path)
    assert LatencyTable.load(path).meta.device_rules.isolation == ()
    profile_model(net, x, device, path, grid=grid, resume=True, progress=False)
    (cost,) = LatencyTable.load(path).meta.device_rules.isolation
    assert cost.overhead_ms == pytest.approx(0.009, rel=0.05)
