"""Each backend on tiny units; unavailable backends skip with their own reason."""

from collections import Counter

import numpy as np
import pytest
import torch
from nets import ResidualNet

from ttmpd.errors import BackendUnavailableError
from ttmpd.profiler import (
    BACKENDS,
    BackendConfig,
    TimingConfig,
    UnitConfig,
    build_unit,
    extract_units,
    get_backend,
    split_fusion,
)

QUICK = TimingConfig(min_samples=3, max_samples=10, max_seconds=0.2, min_sample_ms=0.2)
CONV = UnitConfig("conv", 1, 8, 8, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, bn=True, act="relu")


def available(name: str):
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"{name} unavailable: {backend.unavailable_reason()}")
    return backend


@pytest.mark.parametrize("name", ["torch-cpu", "onnxruntime", "torch-cuda", "fake"])
def test_backend_measures_a_unit_and_a_model(name, example_input):
    backend = available(name)
    t = backend.measure(CONV, QUICK)
    assert np.isfinite(t.median_ms) and t.median_ms > 0
    assert t.samples >= 3
    # 64x the MACs on a 4x larger map: a timer that measured nothing (or the wrong unit)
    # would not see it
    big = backend.measure(
        UnitConfig("conv", 1, 64, 64, 16, 16, 16, 16, 3, 3, 1, 1, 1, 1, bn=True, act="relu"),
        QUICK,
    )
    assert big.median_ms > 3 * t.median_ms
    whole = backend.measure_model(ResidualNet().eval(), example_input, QUICK)
    assert whole.median_ms > 0


@pytest.mark.parametrize("name", ["torch-cpu", "onnxruntime", "torch-cuda", "fake"])
def test_fingerprint_records_device_and_settings(name):
    backend = get_backend(name, BackendConfig(threads=1, inter_op_threads=1))
    fp = backend.fingerprint()
    assert fp.backend == name and fp.threads == 1
    assert fp.physical_cores >= 1 and fp.logical_cores >= fp.physical_cores
    assert fp.library_versions and fp.cpu_model
    other = get_backend(name, BackendConfig(threads=2)).fingerprint()
    assert fp.differences(other) == ["threads (1 vs 2)"]


def test_registry_lists_all_backends():
    assert set(BACKENDS.names()) == {"torch-cpu", "torch-cuda", "onnxruntime", "openvino", "fake"}


def test_cuda_reports_why_it_is_unavailable():
    backend = get_backend("torch-cuda")
    if backend.is_available():
        pytest.skip("CUDA is available here; the unavailable path cannot be exercised")
    reason = backend.unavailable_reason()
    assert "CPU-only build" in reason or "no CUDA device" in reason
    with pytest.raises(BackendUnavailableError, match="torch-cuda"):
        backend.measure(CONV, QUICK)


@pytest.mark.cuda
def test_cuda_timing_synchronises():
    backend = available("torch-cuda")
    small = backend.measure(CONV, QUICK).median_ms
    big = backend.measure(CONV.replace(in_channels=256, out_channels=256, in_h=64, in_w=64,
                                       out_h=64, out_w=64), QUICK).median_ms  # fmt: skip
    assert big > small  # without synchronisation both would time only the launch


@pytest.mark.ort
@pytest.mark.parametrize(
    "unit",
    [CONV, CONV.replace(n_inputs=2, in_channels=4), UnitConfig("add", 1, 4, 4, 3, 3, 3, 3,
                                                              n_inputs=2)],
    ids=["conv-bn-relu", "conv-residual", "add"],
)  # fmt: skip
def test_onnx_export_computes_what_torch_computes(unit):
    pytest.importorskip("onnxruntime")
    from ttmpd.profiler.backends import export_onnx, ort_session

    module, inputs = build_unit(unit)
    session = ort_session(export_onnx(module, inputs), BackendConfig())
    feeds = {f"x{i}": t.numpy() for i, t in enumerate(inputs)}
    (ort_out,) = session.run(None, feeds)
    with torch.inference_mode():
        expected = module(*inputs).numpy()
    np.testing.assert_allclose(ort_out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.ort
@pytest.mark.parametrize(
    ("level", "fusion"),
    [("basic", "conv-bn"), ("extended", "conv-bn-act"), ("all", "conv-bn-add-act")],
)
def test_ort_units_match_the_optimised_graph(level, fusion, tmp_path):
    """The units we extract are the kernels ORT actually runs after graph optimisation."""
    onnx = pytest.importorskip("onnx")
    from ttmpd.models import create_model
    from ttmpd.profiler.backends import export_onnx, ort_session

    backend = get_backend("onnxruntime", BackendConfig(graph_optimization=level))
    conv_fusion, _ = split_fusion(backend.fusion)
    if level == "all" and conv_fusion != "conv-bn-add-act":
        pytest.skip("NCHWc layout transforms are not applied on this CPU")
    assert conv_fusion == fusion
    for name in ("resnet20", "mobilenet_v2"):
        model, x = create_model(name).eval(), torch.randn(1, 3, 32, 32)
        path = tmp_path / f"{name}-{level}.onnx"
        ort_session(export_onnx(model, (x,)), backend.config, optimized_path=str(path))
        graph = Counter(n.op_type for n in onnx.load(path).graph.node)
        units = Counter(u.config.op for u in extract_units(model, x, fusion).units)
        acts = Counter(u.config.act for u in extract_units(model, x, fusion).units
                       if u.config.op == "act")  # fmt: skip
        assert graph["BatchNormalization"] == 0
        assert graph["Conv"] + graph["FusedConv"] == units["conv"], name
        assert graph["Add"] + graph["Sum"] == units["add"], name
        assert graph["Relu"] + graph["Clip"] == acts["relu"] + acts["relu6"], name
