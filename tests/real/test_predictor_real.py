"""The predictor against real measurements on tiny nets (marker ``real``).

Everything here is measured on this machine with ONNX Runtime and eager PyTorch: a tiny
residual net at 16x16 costs tens of microseconds per unit, so a table, a calibration and a
handful of held-out prunes take seconds. Tolerances are set from the noise floor each test
measures itself (two rounds of the same models), not typed in: the predictor must land
within ``max(10%, 3 x the noise floor's median error)`` on the median held-out prune.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nets import ResidualNet

from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.profiler import BackendConfig, GridConfig, get_backend
from ttmpd.pruning import (
    apply_plan,
    calibrate_predictor,
    channel_groups,
    measure_models,
    random_plan,
)

pytestmark = pytest.mark.real

BACKENDS = ["onnxruntime", "torch-cpu"]


def _held_out_prunes(model, x, n: int, seed: int):
    groups = channel_groups(model, x)
    rng = np.random.default_rng(seed)
    return [
        apply_plan(model, x, random_plan(model, x, groups, target_ratio=r, seed=seed + i)).eval()
        for i, r in enumerate(rng.uniform(0.2, 0.7, n))
    ]


@pytest.fixture(scope="module", params=BACKENDS)
def fitted(request, tmp_path_factory):
    name = request.param
    backend = get_backend(name, BackendConfig(threads=1))
    if not backend.is_available():
        pytest.skip(f"{name}: {backend.unavailable_reason()}")
    torch.manual_seed(0)
    model, x = ResidualNet(c=16).eval(), torch.randn(1, 3, 16, 16)
    path = tmp_path_factory.mktemp(name) / "lut.parquet"
    table = profile_model(model, x, backend, path, grid=GridConfig(channel_step=4,
                          off_grid_per_unit=4), progress=False).table  # fmt: skip
    predictor = LatencyPredictor().fit(table)
    calibrate_predictor(predictor, model, x, backend, n_variants=4, seed=1)
    return backend, table, predictor, model, x


def test_probed_rules_are_stored_with_the_real_table(fitted):
    backend, table, predictor, *_ = fitted
    stored, fresh = table.meta.device_rules, backend.probe_rules()
    assert stored is not None
    assert (stored.blocked, stored.native) == (fresh.blocked, fresh.native)  # deterministic
    assert predictor.rules_ == stored
    # the predictor switches follow what the probe found, whatever this device is
    assert predictor.blocked_layout_ == (stored.blocked is not None)
    assert predictor.native_conv_slope_ == (stored.native is not None)


def test_held_out_prunes_are_predicted_within_the_noise_floor(fitted):
    backend, _, predictor, model, x = fitted
    prunes = _held_out_prunes(model, x, 6, seed=11)
    pairs = [(m, x) for m in prunes]
    first = np.array(measure_models(pairs, backend, rounds=3))
    second = np.array(measure_models(pairs, backend, rounds=3))
    noise = float(np.median(np.abs(second / first - 1)))
    predicted = np.array([predictor.predict_model(m, x).total_ms for m in prunes])
    error = np.abs(predicted / first - 1)
    assert float(np.median(error)) <= max(0.10, 3 * noise), (error, noise)
    # and prediction orders the prunes as the device does (pruned more -> faster)
    order_measured = np.argsort(first)
    assert np.corrcoef(predicted[order_measured], first[order_measured])[0, 1] > 0.8


def test_calibration_improves_on_the_plain_unit_sum(fitted):
    backend, _, predictor, model, x = fitted
    prunes = _held_out_prunes(model, x, 4, seed=23)
    measured = np.array(measure_models([(m, x) for m in prunes], backend, rounds=3))
    calibrated = np.array([predictor.predict_model(m, x).total_ms for m in prunes])
    plain = np.array([predictor.predict_model(m, x, calibrated=False).total_ms for m in prunes])
    assert np.median(np.abs(calibrated / measured - 1)) < np.median(np.abs(plain / measured - 1))
