"""The OpenVINO backend: settings read back, fusion and layouts read from the plugin, timing,
numerics."""

import sys
from collections import Counter

import numpy as np
import pytest
import torch
from nets import UNITS, ResidualNet

from ttmpd.errors import BackendUnavailableError, InputError
from ttmpd.profiler import (
    BACKENDS,
    FUSIONS,
    BackendConfig,
    TimingConfig,
    UnitConfig,
    build_unit,
    extract_units,
    get_backend,
    split_fusion,
)
from ttmpd.profiler._fingerprint import cpu_info
from ttmpd.profiler.backends.openvino import (
    OpenVinoBackend,
    UnitLayouts,
    executed_conversions,
    in_layout,
    layout_order,
    onnx_kernels,
    openvino_compile,
    probe_unit_layouts,
    runtime_nodes,
)
from ttmpd.profiler.backends.ort import export_onnx

pytestmark = pytest.mark.openvino

QUICK = TimingConfig(min_samples=5, max_samples=15, max_seconds=0.3, min_sample_ms=0.5)
CONV = UnitConfig("conv", 1, 8, 8, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, bn=True, act="relu")
#: Channels, height and width all differ, so a permuted tensor has another shape.
OBLONG = UnitConfig("conv", 1, 16, 16, 12, 10, 12, 10, 3, 3, 1, 1, 1, 1, bn=True, act="relu")


@pytest.fixture
def backend() -> OpenVinoBackend:
    backend = get_backend("openvino")
    if not backend.is_available():
        pytest.skip(f"openvino unavailable: {backend.unavailable_reason()}")
    return backend


def test_openvino_is_registered():
    assert "openvino" in BACKENDS.names()
    backend = get_backend("openvino", BackendConfig(threads=2))
    assert type(backend) is OpenVinoBackend and backend.name == "openvino"
    assert backend.config.threads == 2


def test_unavailable_without_openvino_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises
    backend = get_backend("openvino")
    reason = backend.unavailable_reason()
    assert reason and "\n" not in reason and "pip install" in reason
    assert not backend.is_available()
    with pytest.raises(BackendUnavailableError, match="openvino"):
        backend.measure(CONV, QUICK)


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_model_runs_the_configured_settings(threads, backend):
    import openvino.properties as props
    import openvino.properties.hint as hints

    if threads > cpu_info()[1]:
        pytest.skip(f"{threads} threads need {threads} physical cores")
    ov_backend = get_backend("openvino", BackendConfig(threads=threads))
    _, compiled = ov_backend.compile(*build_unit(CONV))
    assert compiled.get_property(props.inference_num_threads) == threads
    assert compiled.get_property(props.num_streams) == 1
    assert str(compiled.get_property(hints.performance_mode)) == "LATENCY"


def test_threads_the_plugin_would_not_run_are_refused(backend):
    too_many = 4 * cpu_info()[2]
    with pytest.raises(InputError, match=f"not the {too_many} requested"):
        get_backend("openvino", BackendConfig(threads=too_many)).compile(*build_unit(CONV))


def test_fusion_is_read_from_the_runtime_graph(backend):
    import onnx

    model_bytes, compiled = backend.compile(*build_unit(CONV))
    onnx_ops = [n.op_type for n in onnx.load_from_string(model_bytes).graph.node]
    kernels = onnx_kernels(model_bytes, compiled)
    assert sorted(onnx_ops) == ["Conv", "Relu"]  # the export folds the BN
    assert sorted(t for k in kernels for t in k) == sorted(onnx_ops)  # every op traced
    assert len(kernels) < len(onnx_ops)
    conv_fusion, _ = split_fusion(backend.fusion)
    assert conv_fusion in FUSIONS
    assert conv_fusion in ("conv-bn-act", "conv-bn-add-act")  # Conv+Relu ran as one

    residual = onnx_kernels(*backend.compile(*build_unit(CONV.replace(n_inputs=2))))
    add_fused = any("Add" in k and "Conv" in k for k in residual)
    assert (conv_fusion == "conv-bn-add-act") == add_fused


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_units_match_the_runtime_graph(name, backend):
    """The units extracted with ``backend.fusion`` are the kernels the plugin runs."""
    from ttmpd.models import create_model

    model, x = create_model(name).eval(), torch.randn(1, 3, 32, 32)
    kernels = Counter(onnx_kernels(*backend.compile(model, (x,))))
    units = extract_units(model, x, backend.fusion).units
    ops = Counter(u.config.op for u in units)
    acts = Counter(u.config.act for u in units if u.config.op == "act")
    assert sum(n for k, n in kernels.items() if "Conv" in k) == ops["conv"]
    assert sum(n for k, n in kernels.items() if "Add" in k and "Conv" not in k) == ops["add"]
    assert kernels[("Relu",)] + kernels[("Clip",)] == acts["relu"] + acts["relu6"]


def test_latency_grows_with_work(backend):
    small = UnitConfig("conv", 1, 8, 8, 32, 32, 32, 32, 3, 3, 1, 1, 1, 1)
    big = small.replace(in_channels=64, out_channels=64)  # 64x the MACs, well above overhead
    t_small = backend.measure(small, QUICK)
    t_big = backend.measure(big, QUICK)
    assert np.isfinite(t_small.median_ms) and t_small.median_ms > 0
    assert t_big.median_ms > 3 * t_small.median_ms


def test_measures_a_whole_model(backend, example_input):
    whole = backend.measure_model(ResidualNet().eval(), example_input, QUICK)
    unit = backend.measure(UnitConfig("act", 1, 8, 8, 8, 8, 8, 8, act="relu"), QUICK)
    assert np.isfinite(whole.median_ms) and whole.samples >= 5
    assert whole.median_ms > unit.median_ms


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.op)
def test_compiled_unit_computes_what_torch_computes(unit, backend):
    module, inputs = build_unit(unit)
    _, compiled = backend.compile(module, inputs)
    request = compiled.create_infer_request()
    result = request.infer({f"x{i}": t.numpy() for i, t in enumerate(inputs)})
    with torch.inference_mode():
        expected = module(*inputs).numpy()
    np.testing.assert_allclose(result[compiled.output(0)], expected, rtol=1e-4, atol=1e-5)


def test_fingerprint_names_the_openvino_device(backend):
    import openvino as ov

    fp = backend.fingerprint()
    info, versions = dict(fp.extra_info), dict(fp.library_versions)
    assert fp.backend == "openvino" and fp.threads == 1
    assert info["full_device_name"] == ov.Core().get_property("CPU", "FULL_DEVICE_NAME")
    assert "FP32" in info["optimization_capabilities"].split()
    assert versions["openvino"] != "absent" and set(versions) == {"openvino", "onnx", "torch"}
    other = get_backend("openvino", BackendConfig(threads=2)).fingerprint()
    assert fp.differences(other) == ["threads (1 vs 2)"]


def _conv_layout(compiled) -> set[str]:
    return {n.layout for n in runtime_nodes(compiled) if n.layer_type == "Convolution"}


def _conversions(module, inputs) -> list[str]:
    return executed_conversions(openvino_compile(export_onnx(module, inputs), 1, True), inputs)


def test_probed_layouts_are_what_the_runtime_graph_runs(backend):
    """The probe's conv layout is the layout of every conv in a compiled whole model and in
    a compiled conv unit; the fully connected layer and softmax are 2-D."""
    found = dict(backend.unit_layouts().in_model)
    assert {"conv", "linear", "gap", "add", "act", "maxpool"} <= set(found)
    model = ResidualNet().eval()
    _, compiled = backend.compile(model, (torch.randn(1, 3, 16, 16),))
    assert _conv_layout(compiled) == {found["conv"]}
    assert _conv_layout(backend.compile(*build_unit(CONV))[1]) == {found["conv"]}
    assert len(found["linear"]) == 2 and len(found["softmax"]) == 2
    rules = backend.probe_rules()
    assert rules.unit_layouts == tuple(sorted(found.items()))
    assert rules.blocked is None and rules.native is None
    assert any(found["conv"] in note for note in rules.notes)


@pytest.mark.parametrize("unit", [OBLONG, OBLONG.replace(n_inputs=2)], ids=["conv", "residual"])
def test_a_conv_in_its_probed_layout_runs_no_conversion(unit, backend):
    """Declared in the probed layout, a conv runs without conversions; exported planar it
    runs some. Where the probe measures a variant as exported, no declaration runs clean."""
    in_model = dict(backend.unit_layouts().in_model)["conv"]
    if layout_order(in_model) in (None, (0, 1, 2, 3)):
        pytest.skip(f"convs run {in_model} in a model on this device, nothing to declare")
    planar = build_unit(unit)
    assert _conversions(*planar)  # exported as NCHW, the plugin converts around the conv
    layout, copy_out = backend.unit_layouts().declared(unit)
    if not layout:
        assert _conversions(*in_layout(*planar, in_model))
        assert _conversions(*in_layout(*planar, in_model, copy_out=True))
        return
    assert layout == in_model
    module, inputs = backend.unit_module(unit)
    assert inputs[0].shape == planar[1][0].permute(layout_order(layout)).shape
    assert _conversions(module, inputs) == []
    if copy_out:  # the copy is what lets the plugin fold the output conversion
        assert _conversions(*in_layout(*planar, layout))


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.op)
def test_a_unit_as_measured_computes_what_torch_computes(unit, backend):
    """``unit_module`` (permuted inputs and output) computes the unit's function: OpenVINO's
    output equals PyTorch's on the planar tensors, permuted."""
    layout, _ = backend.unit_layouts().declared(unit)
    torch.manual_seed(0)
    planar, planar_inputs = build_unit(unit)
    torch.manual_seed(0)
    module, inputs = backend.unit_module(unit)
    order = layout_order(layout) if layout else tuple(range(planar_inputs[0].dim()))
    for declared, x in zip(inputs, planar_inputs, strict=True):
        torch.testing.assert_close(declared, x.permute(order))
    _, compiled = backend.compile(module, inputs)
    result = compiled.create_infer_request().infer(
        {f"x{i}": t.numpy() for i, t in enumerate(inputs)}
    )
    with torch.inference_mode():
        expected = planar(*planar_inputs)
    expected = expected.permute(order) if expected.dim() == len(order) else expected
    np.testing.assert_allclose(result[compiled.output(0)], expected.numpy(), rtol=1e-4, atol=1e-4)


def test_units_follow_the_probe_not_a_constant(backend, monkeypatch):
    """What is declared comes from the probe's record: another record, another graph."""
    planar_only = UnitLayouts((("conv", "abcd"),), (), (), (), 0.0)
    monkeypatch.setattr(backend, "unit_layouts", lambda: planar_only)
    _, inputs = backend.unit_module(OBLONG)
    assert inputs[0].shape == (1, 16, 12, 10)
    other = UnitLayouts((("conv", "abdc"),), (("conv", "abdc"),), (), (), 0.0)
    monkeypatch.setattr(backend, "unit_layouts", lambda: other)
    module, inputs = backend.unit_module(OBLONG)
    assert inputs[0].shape == (1, 16, 10, 12)  # N, C, W, H
    torch.testing.assert_close(inputs[0], build_unit(OBLONG)[1][0].transpose(2, 3))
    with torch.inference_mode():
        assert module(*inputs).shape == (1, 16, 10, 12)


def test_layout_order_reads_plain_layouts_only():
    assert layout_order("acdb") == (0, 2, 3, 1)
    assert layout_order("abcd") == (0, 1, 2, 3)
    assert layout_order("ab") == (0, 1)
    assert layout_order("aBcd16b") is None  # blocked: no Transpose expresses it
    assert layout_order("undef") is None


def test_probe_is_cached_per_thread_count(backend):
    assert probe_unit_layouts(1) is probe_unit_layouts(1)
    assert backend.unit_layouts() is probe_unit_layouts(backend.config.threads)


_KERNEL_OF_A_CONV = """
import sys, torch
from ttmpd.profiler import UnitConfig, build_unit
from ttmpd.profiler.backends.openvino import openvino_compile
from ttmpd.profiler.backends.ort import export_onnx
unit = UnitConfig("conv", 1, 16, 32, 16, 16, 16, 16, 3, 3, 1, 1, 1, 1)
module, inputs = build_unit(unit)
compiled = openvino_compile(export_onnx(module, inputs), threads=1)
for op in compiled.get_runtime_model().get_ordered_ops():
    info = op.get_rt_info()
    if info["layerType"].astype(str) == "Convolution":
        print(info["primitiveType"].astype(str))
"""


def _conv_kernel(env: dict) -> str:
    import os
    import subprocess

    done = subprocess.run([sys.executable, "-c", _KERNEL_OF_A_CONV], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})  # fmt: skip
    assert done.returncode == 0, done.stderr[-500:]
    return done.stdout.strip()


def test_onednn_isa_limit_emulates_another_host_in_openvino(backend):
    """OpenVINO's CPU plugin honours ONEDNN_MAX_CPU_ISA, as torch's oneDNN does: an AVX-512
    host profiles with AVX2 kernels (and the fingerprint's kernel ISA names the limit)."""
    from ttmpd.profiler._fingerprint import cpu_isa

    if "avx512f" not in cpu_isa().split(","):
        pytest.skip("the host has no AVX-512: nothing to limit")
    native = _conv_kernel({"ONEDNN_MAX_CPU_ISA": ""})
    limited = _conv_kernel({"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert "avx512" in native and "_f32" in native  # ACCURACY mode: no bf16 down-cast
    assert "avx2" in limited and "avx512" not in limited
