"""``openvino``: each unit exported to ONNX, compiled by OpenVINO's CPU plugin and run.

Conversion goes through the same TorchScript ONNX export as the ONNX Runtime backend
(:func:`~ttmpd.profiler.backends.ort.export_onnx`) and ``Core.read_model`` on the bytes.
``ov.convert_model`` on the torch module would also work, but it traces the module with
TorchScript and runs OpenVINO's PyTorch frontend on every call, which for small units is
several times slower than exporting and reading ONNX; a latency table converts thousands
of units, so the faster path wins. Both backends then start from the identical graph.

The compiled model is pinned to ``config.threads`` inference threads, one stream and the
``LATENCY`` hint, and runs in ``ACCURACY`` execution mode: the CPU plugin keeps the model's
own precision instead of silently down-casting FP32 to BF16 on CPUs that support BF16, so
the timed kernels compute what the PyTorch model computes. One synchronous infer request is
created per unit with its inputs set once, so only ``request.infer()`` is timed.

What the plugin fuses is read, not assumed: :func:`probe_openvino_fusion` compiles a probe
net and reads the runtime graph, whose nodes list the original layers they absorbed.
"""

from __future__ import annotations

import time
from collections import Counter
from functools import cache
from typing import Any

import torch
from torch import nn

from ...errors import InputError
from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._timing import Runner
from ._base import BACKENDS, BackendBase
from .ort import _ProbeNet, export_onnx

DEVICE = "CPU"
# Runtime nodes that hold data rather than run ops (``Output`` is named after the output).
_NOT_KERNELS = frozenset({"Input", "Output", "Const"})
_INSTALL_HINT = "openvino is not installed; pip install 'ttmpd[openvino]' (or pip install openvino)"


def openvino_compile(model_bytes: bytes, threads: int) -> Any:
    """An ``openvino.CompiledModel`` of ONNX ``model_bytes`` on the CPU plugin.

    Pinned to ``threads`` inference threads, one stream, the ``LATENCY`` hint and
    ``ACCURACY`` execution mode (no down-casting below the model's precision). The thread
    count is read back: the plugin caps it at the cores it may use, and a table must not
    record threads that did not run.
    """
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    settings = {
        props.inference_num_threads: threads,
        props.num_streams: 1,
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        hints.execution_mode: hints.ExecutionMode.ACCURACY,
    }
    compiled = core.compile_model(core.read_model(model_bytes), DEVICE, settings)
    running = compiled.get_property(props.inference_num_threads)
    if running != threads:
        raise InputError(
            f"OpenVINO runs {running} inference threads, not the {threads} requested "
            f"(its {DEVICE} plugin caps threads at the available cores); pass threads <= {running}"
        )
    return compiled


def runtime_nodes(compiled: Any) -> list[tuple[str, tuple[str, ...]]]:
    """``(layer type, original layer names)`` of each node the plugin actually executes.

    Nodes created by the plugin itself (layout reorders) have no original layers.
    """
    nodes = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str)
        nodes.append((info["layerType"].astype(str), tuple(n for n in names.split(",") if n)))
    return nodes


def _onnx_node(name: str, index: dict[str, int]) -> int | None:
    """The ONNX node an OpenVINO layer name comes from, or None.

    OpenVINO keeps ONNX node names, appends ``/Suffix`` to the ops it splits them into
    (``/conv/Conv/WithoutBiases``) and names the op producing a graph output after that
    output (``y``).
    """
    while name:
        if name in index:
            return index[name]
        name = name.rpartition("/")[0]
    return None


def onnx_kernels(model_bytes: bytes, compiled: Any) -> list[tuple[str, ...]]:
    """For each runtime node that runs ONNX ops, the types of those ops (sorted).

    An ONNX graph of Conv + Relu that the plugin fused gives ``[("Conv", "Relu")]``;
    unfused it gives ``[("Conv",), ("Relu",)]``. Raises ``RuntimeError`` when an ONNX op
    (other than constants) is found in no runtime node: an op that cannot be traced must
    not read as fused.
    """
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    index = {out: i for i, node in enumerate(graph.node) for out in node.output}
    index.update({node.name: i for i, node in enumerate(graph.node)})
    kernels, seen = [], set()
    for layer_type, names in runtime_nodes(compiled):
        if layer_type in _NOT_KERNELS:
            continue
        nodes = {_onnx_node(n, index) for n in names} - {None}
        seen |= nodes
        if nodes:
            kernels.append(tuple(sorted(graph.node[i].op_type for i in nodes)))
    lost = [
        node.name or node.op_type
        for i, node in enumerate(graph.node)
        if i not in seen and node.op_type not in ("Constant", "Identity")
    ]
    if lost:
        raise RuntimeError(f"ONNX ops not found in OpenVINO's runtime graph: {', '.join(lost)}")
    return kernels


@cache
def probe_openvino_fusion() -> str:
    """Which :data:`~ttmpd.profiler.FUSIONS` mode the OpenVINO CPU plugin applies.

    Compiles :class:`~ttmpd.profiler.backends.ort._ProbeNet` (stem conv-bn-relu and a
    residual block) and counts the ONNX ops left in runtime nodes without a Conv: a BN ->
    ``none``; two or more ReLUs -> ``conv-bn``; the residual Add -> ``conv-bn-act``;
    nothing -> ``conv-bn-add-act``. The export already folds eval-mode BN into the convs,
    as it does for every unit this backend measures.
    """
    model_bytes = export_onnx(_ProbeNet().eval(), (torch.randn(1, 16, 16, 16),))
    kernels = onnx_kernels(model_bytes, openvino_compile(model_bytes, threads=1))
    alone = Counter(t for k in kernels if "Conv" not in k for t in k)
    if alone["BatchNormalization"]:
        return "none"
    if alone["Relu"] >= 2:
        return "conv-bn"
    if alone["Add"] or alone["Sum"]:
        return "conv-bn-act"
    return "conv-bn-add-act"


@BACKENDS.register
class OpenVinoBackend(BackendBase):
    """OpenVINO's CPU plugin (``pip install 'ttmpd[openvino]'``).

    ``fusion`` is detected with :func:`probe_openvino_fusion`. ``config.threads`` sets the
    inference threads; OpenVINO has no inter-op pool, one stream runs the graph.

    The plugin runs convolutions in a channels-last layout and converts NCHW tensors at the
    graph's inputs and outputs. In a whole model that happens once; an isolated conv unit
    pays it on its own input and output, so unit sums over-estimate whole models (as with
    ONNX Runtime's blocked layout), by more for small convs.
    """

    name = "openvino"

    @property
    def fusion(self) -> str:  # type: ignore[override]
        self.require_available()
        return probe_openvino_fusion()

    def unavailable_reason(self) -> str:
        try:
            import openvino as ov
        except ImportError:
            return _INSTALL_HINT
        if DEVICE not in ov.Core().available_devices:
            return f"the OpenVINO {DEVICE} plugin is not available"
        return ""

    def fingerprint(self) -> DeviceFingerprint:
        extra = [
            ("device", DEVICE),
            ("execution_mode", "ACCURACY"),
            ("opset", str(self.config.opset)),
        ]
        if self.is_available():
            import openvino as ov
            import openvino.properties.device as device

            core = ov.Core()
            extra += [
                ("full_device_name", str(core.get_property(DEVICE, device.full_name))),
                (
                    "optimization_capabilities",
                    " ".join(core.get_property(DEVICE, device.capabilities)),
                ),
            ]
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=library_versions("openvino", "onnx", "torch"),
            extra_info=tuple(extra),
        )

    def compile(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[bytes, Any]:
        """``(ONNX bytes, openvino.CompiledModel)`` of ``module(*inputs)``, as measured."""
        self.require_available()
        try:
            model_bytes = export_onnx(module, inputs, self.config.opset)
        except Exception as exc:  # the exporter raises many types; report one line
            raise InputError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc
        return model_bytes, openvino_compile(model_bytes, self.config.threads)

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        import openvino as ov

        _, compiled = self.compile(module, inputs)
        request = compiled.create_infer_request()
        for i, t in enumerate(inputs):
            request.set_tensor(compiled.input(f"x{i}"), ov.Tensor(t.detach().cpu().numpy()))

        def run(number: int) -> float:
            start = time.perf_counter()
            for _ in range(number):
                request.infer(share_outputs=True)
            return (time.perf_counter() - start) * 1e3

        return run
