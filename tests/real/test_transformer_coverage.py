"""Priced units cover a real ViT's latency (marker ``real``): torch-cpu and ONNX Runtime.

A tiny ViT at 64x64 with 4x4 patches has 257 tokens, so attention is about 40% of its
time on both backends (one fused unit on torch-cpu, matmul/softmax/matmul on ONNX
Runtime). The sum of its units, each measured alone, must land within 0.6-1.4x of the
whole model's measured latency. On torch-cpu the share is below 1 and depends on the host:
0.76-0.86 in quiet rounds on the host this was written on, 0.64-0.79 (median 0.68) on a
CI host. Attention left unpriced removes about 40% of the sum, which puts the share at
0.41-0.48 on those two hosts, under the 0.6 bound. A slowdown caught by one side alone
moves a share too: each round's share is taken against the whole model measured just
before and after it, median over rounds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_nets import TinyViT

from ttmpd.profiler import BackendConfig, extract_units, get_backend

pytestmark = pytest.mark.real

ATTENTION = {"sdpa", "matmul", "softmax"}
ROUNDS = 5


@pytest.mark.parametrize("name", ["torch-cpu", pytest.param("onnxruntime", marks=pytest.mark.ort)])
def test_priced_units_cover_the_measured_latency(name):
    backend = get_backend(name, BackendConfig(threads=1))
    if not backend.is_available():
        pytest.skip(f"{name}: {backend.unavailable_reason()}")
    torch.manual_seed(0)
    model = TinyViT(image=64, patch=4, dim=64, heads=4, mlp=256, depth=2).eval()
    x = torch.randn(1, 3, 64, 64)
    extraction = extract_units(model, x, backend.fusion)
    assert not extraction.uncovered
    # rounds of (whole, every unit, whole), each measurement its fastest decile; the units'
    # sum over the two whole readings beside it, median over rounds: a change of the
    # host's speed lasting longer than a round scales both sides of that round's ratio
    shares, unit_ms = [], {}
    for _ in range(ROUNDS):
        before = backend.measure_model(model, x).p10_ms
        for u in extraction.units:
            unit_ms[u.index] = backend.measure(u.config).p10_ms
        after = backend.measure_model(model, x).p10_ms
        shares.append(sum(unit_ms.values()) / np.sqrt(before * after))
    total = sum(unit_ms.values())
    attention = sum(unit_ms[u.index] for u in extraction.units if u.config.op in ATTENTION)
    assert 0.6 <= float(np.median(shares)) <= 1.4, shares
    assert attention / total > 0.2  # attention is priced, and priced at its size
