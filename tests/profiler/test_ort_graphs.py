"""ONNX Runtime unit graphs re-dimensioned for other channel counts equal fresh exports."""

from __future__ import annotations

import pytest

from ttmpd.profiler import BackendConfig, UnitConfig, build_unit, with_channels
from ttmpd.profiler.backends.ort import (
    NoTemplate,
    OnnxRuntimeBackend,
    _GraphTemplate,
    export_onnx,
    unit_structure,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.ort


def _conv(**kw) -> UnitConfig:
    base = dict(op="conv", batch=1, in_channels=24, out_channels=40, in_h=12, in_w=12,
                out_h=12, out_w=12, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1)  # fmt: skip
    return UnitConfig(**{**base, **kw})


def _plain(op: str, c: int = 16, **kw) -> UnitConfig:
    return UnitConfig(op, 1, c, c, 8, 8, kw.pop("out_h", 8), kw.pop("out_w", 8), **kw)


UNITS = {
    "conv": _conv(),
    "conv-bias-relu": _conv(bias=True, act="relu"),
    "conv-bn-relu6": _conv(bn=True, act="relu6"),
    "conv-bn-gelu": _conv(bn=True, act="gelu"),
    "conv-strided": _conv(out_h=6, out_w=6, stride_h=2, stride_w=2, bn=True, act="silu"),
    "conv-dilated-1x5": _conv(kernel_h=1, kernel_w=5, pad_h=0, pad_w=4, dilation_w=2),
    "conv-residual": _conv(bn=True, act="relu", n_inputs=2),
    "depthwise": _conv(in_channels=24, out_channels=24, groups=24, bn=True, act="hardswish"),
    "grouped": _conv(groups=4, bias=True),
    "linear": UnitConfig("linear", 1, 64, 10, bias=True),
    "linear-nobias": UnitConfig("linear", 2, 64, 48),
    "bn": _plain("bn"),
    "act-mish": _plain("act", act="mish"),
    "maxpool": _plain("maxpool", out_h=4, out_w=4, kernel_h=2, kernel_w=2, stride_h=2, stride_w=2),
    "avgpool": _plain(
        "avgpool",
        out_h=4,
        out_w=4,
        kernel_h=3,
        kernel_w=3,
        stride_h=2,
        stride_w=2,
        pad_h=1,
        pad_w=1,
    ),
    "gap": _plain("gap", out_h=1, out_w=1),
    "gap-2x2": _plain("gap", out_h=2, out_w=2),
    "add": _plain("add", n_inputs=3),
    "mul-broadcast": _plain("mul", n_inputs=2, broadcast=True),
    "cat": _plain("cat", c=17, n_inputs=3),
    "softmax": UnitConfig("softmax", 1, 100, 100),
}


def _other_counts(unit: UnitConfig) -> list[tuple[int, int]]:
    """Channel counts of the same structure, one swapping which side is wider."""
    if unit.op in ("conv", "linear") and not unit.is_depthwise:
        g = unit.groups
        return [(8 * g, 12 * g), (13 * g, 5 * g)]
    return [(8, 8), (37, 37)]


def _signature(model_bytes: bytes) -> dict:
    """Everything of a graph that latency depends on, without names and weight values."""
    graph = onnx.load_from_string(model_bytes).graph
    dims = {i.name: tuple(i.dims) for i in graph.initializer}

    def shape(value) -> tuple[int, ...]:
        return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)

    def attr(a) -> object:
        value = onnx.helper.get_attribute_value(a)
        return onnx.numpy_helper.to_array(value).tolist() if a.type == a.TENSOR else value

    nodes = [
        (n.op_type, n.domain, sorted((a.name, str(attr(a))) for a in n.attribute),
         [dims.get(name, "activation") for name in n.input])
        for n in graph.node
    ]  # fmt: skip
    return {
        "inputs": [shape(v) for v in graph.input],
        "outputs": [shape(v) for v in graph.output],
        "nodes": nodes,
        "initializers": sorted(dims.values()),
    }


@pytest.mark.parametrize("name", sorted(UNITS))
def test_redimensioned_graph_equals_a_fresh_export(name):
    unit = UNITS[name]
    template = _GraphTemplate(export_onnx(*build_unit(unit)), unit)
    for c_in, c_out in _other_counts(unit):
        other = with_channels(unit, c_in, c_out)
        assert unit_structure(other) == unit_structure(unit)
        module, inputs = build_unit(other)
        fresh = _signature(export_onnx(module, inputs))
        assert _signature(template.instantiate(other, inputs)) == fresh, (c_in, c_out)


def test_other_dtypes_are_exported_every_time():
    unit = _conv(dtype="float64")
    with pytest.raises(NoTemplate, match="dtype"):
        _GraphTemplate(export_onnx(*build_unit(unit)), unit)


def test_backend_exports_each_structure_once(monkeypatch):
    import ttmpd.profiler.backends.ort as ort

    exported: list[str] = []
    real = ort.export_onnx

    def counting(module, inputs, opset=17):
        exported.append(type(module).__name__)
        return real(module, inputs, opset)

    monkeypatch.setattr(ort, "export_onnx", counting)
    backend = OnnxRuntimeBackend(BackendConfig(threads=1))
    conv, pool = UNITS["conv-bn-relu6"], UNITS["maxpool"]
    for c_in, c_out in [(24, 40), (8, 16), (40, 8)]:
        backend.unit_runner(with_channels(conv, c_in, c_out))(1)
    for c in (16, 24):
        backend.unit_runner(with_channels(pool, c, c))(1)
    assert len(exported) == 2  # one per structure
    fresh = OnnxRuntimeBackend(BackendConfig(threads=1), reuse_graphs=False)
    fresh.unit_runner(conv)(1)
    fresh.unit_runner(with_channels(conv, 8, 16))(1)
    assert len(exported) == 4
