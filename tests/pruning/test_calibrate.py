import pytest
import torch
from nets import ResidualNet

from ttmpd.lut import LatencyPredictor, LatencyTable, profile_model
from ttmpd.profiler import GridConfig, extract_units, get_backend
from ttmpd.pruning import calibrate_predictor, calibration_variants


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
