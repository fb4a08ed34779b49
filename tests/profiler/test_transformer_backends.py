"""Transformer units on the real backends: each runs, and attention is priced the way the
backend runs it (one fused unit or its parts), as read from the backend itself."""

from __future__ import annotations

import pytest
import torch
from transformer_nets import TRANSFORMER_UNITS, TinyViT

from ttmpd.profiler import TimingConfig, extract_units, get_backend, split_fusion

QUICK = TimingConfig(
    warmup_runs=1, min_samples=3, max_samples=5, max_seconds=0.1, min_sample_ms=0.05
)

BACKENDS = [
    pytest.param("torch-cpu", id="torch-cpu"),
    pytest.param("onnxruntime", id="onnxruntime", marks=pytest.mark.ort),
    pytest.param("openvino", id="openvino", marks=pytest.mark.openvino),
]


def _backend(name: str):
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"{name} unavailable: {backend.unavailable_reason()}")
    return backend


@pytest.mark.parametrize("name", BACKENDS)
def test_transformer_units_measure_the_work_they_are_given(name):
    """8192x the batch is slower: a runner that built the unit but ran something else (or
    nothing) would time only its call overhead, the same for both. Each is timed twice in
    alternation and its faster time kept, so a host slowdown during one cannot decide. The
    large unit moves megabytes, so even a many-core runtime cannot hide it in its call
    overhead (512x, some 300 KB, did on a wide host: 1.07x on OpenVINO's elementwise mul)."""
    backend = _backend(name)
    for unit in TRANSFORMER_UNITS:
        pair = (unit, unit.replace(batch=8192 * unit.batch))
        times = [[backend.measure(u, QUICK).median_ms for u in pair] for _ in range(2)]
        small, large = (min(t) for t in zip(*times, strict=True))
        assert large > 1.1 * small > 0, (unit, small, large)


@pytest.mark.parametrize("name", BACKENDS)
def test_attention_units_follow_the_backend(name):
    backend = _backend(name)
    _, parts = split_fusion(backend.fusion)
    e = extract_units(TinyViT(depth=1).eval(), torch.randn(1, 3, 16, 16), backend.fusion)
    ops = [u.config.op for u in e.units]
    assert not e.uncovered
    if parts:
        assert "sdpa" not in ops and ops.count("matmul") == 2
    else:
        assert ops.count("sdpa") == 1 and "matmul" not in ops
