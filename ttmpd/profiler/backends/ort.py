"""``onnxruntime``: each unit exported to a small ONNX graph and run in an InferenceSession.

Export uses PyTorch's TorchScript-based ONNX exporter (``dynamo=False``): it is fast for
small graphs and needs no extra dependency. Sessions pin intra-/inter-op threads, run
sequentially, and use the configured execution provider and graph optimisation level, so a
unit is optimised exactly as it would be inside a whole model (Conv+BN+activation fusion,
see :mod:`ttmpd.profiler._extract`). Inputs are bound once with IOBinding to keep Python
overhead out of the samples.

A grid holds many channel counts of one unit, and channel counts change no node of its
graph, only tensor shapes. So each unit *structure* (the config without its channel
counts) is exported once; other counts re-dimension that graph (:class:`_GraphTemplate`:
input, output and weight shapes, a depthwise conv's ``group``) instead of tracing and
exporting again, which cost more than a unit's timed samples.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import cache

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from .._extract import ATTENTION_PARTS
from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._modules import _inputs, build_unit
from .._rules import ConvLayout, DeviceRules, fit_reorder_cost, infer_blocked_rule
from .._timing import Runner, TimingConfig, measure
from .._units import UnitConfig
from ._base import BACKENDS, BackendBase, BackendConfig


def export_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], opset: int = 17) -> bytes:
    """Serialise ``module(*inputs)`` to ONNX bytes (inputs ``x0..xn``, output ``y``).

    PyTorch's fused transformer fast paths (``nn.MultiheadAttention``,
    ``nn.TransformerEncoderLayer``) have no ONNX form: they are off while tracing, so such
    modules export their step-by-step path."""
    buffer = io.BytesIO()
    fast_path = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                inputs,
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[f"x{i}" for i in range(len(inputs))],
                output_names=["y"],
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return buffer.getvalue()


def ort_session(model_bytes: bytes, config: BackendConfig, optimized_path: str | None = None):
    """An ``onnxruntime.InferenceSession`` configured from ``config``.

    ``optimized_path``: also write the optimised graph there (to inspect fusions).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.threads
    opts.inter_op_num_threads = config.inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[config.graph_optimization]
    opts.log_severity_level = 3
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    provider = config.provider
    if ort_device(config)[0] != "cpu":
        provider = (config.provider, {"device_id": str(config.device)})
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=[provider])


#: Execution providers whose tensors live on a GPU, by the device name ORT binds them to.
_GPU_PROVIDERS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}


def ort_device(config: BackendConfig) -> tuple[str, int]:
    """``(device name, index)`` ORT binds the provider's tensors to: ``("cuda",
    config.device)`` for CUDA and TensorRT, else ``("cpu", 0)``."""
    name = _GPU_PROVIDERS.get(config.provider, "cpu")
    return name, (config.device if name != "cpu" else 0)


def bind_inputs(session, config: BackendConfig, inputs: Sequence[torch.Tensor]):
    """An IO binding with ``inputs`` (named ``x0, x1, ...``) and the output ``y`` on the
    provider's device, so a timed ``run_with_iobinding`` copies nothing between host and
    device: on a GPU provider the inputs are copied to the GPU once, here, and the output
    stays there."""
    import onnxruntime as ort

    binding = session.io_binding()
    device, index = ort_device(config)
    for i, t in enumerate(inputs):
        array = t.detach().cpu().numpy()
        if device == "cpu":
            binding.bind_cpu_input(f"x{i}", array)
        else:
            value = ort.OrtValue.ortvalue_from_numpy(array, device, index)
            binding.bind_ortvalue_input(f"x{i}", value)
    if device == "cpu":
        binding.bind_output("y")
    else:
        binding.bind_output("y", device, index)
    return binding


#: Weight values kept per initializer of a template; other shapes repeat them.
_VALUE_SAMPLE = 4096
_CHANNEL_FIELDS = frozenset({"in_channels", "out_channels", "groups"})
Shape = Callable[[int, int, int], tuple[int, ...]]


def unit_structure(unit: UnitConfig) -> tuple:
    """What fixes a unit's ONNX graph up to tensor shapes: every field but the channel
    counts (and a depthwise conv's groups, which follow them)."""
    rest = tuple(getattr(unit, f.name) for f in fields(unit) if f.name not in _CHANNEL_FIELDS)
    return (*rest, "depthwise" if unit.is_depthwise else unit.groups)


def _initializer_roles(graph) -> dict[str, list[tuple[str, int, dict]]]:
    """Initializer name -> the (op, input index, attributes) of the nodes that read it,
    looking through ``Identity`` nodes (the exporter shares equal initializers that way)."""
    import onnx

    readers: dict[str, list] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, index))
    roles: dict[str, list] = {}
    for init in graph.initializer:
        stack, found = [init.name], []
        while stack:
            for node, index in readers.get(stack.pop(), []):
                if node.op_type == "Identity":
                    stack.append(node.output[0])
                else:
                    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                    found.append((node.op_type, index, attrs))
        roles[init.name] = found
    return roles


def _weight_shape(op: str, index: int, attrs: dict) -> Shape | None:
    """How a weight read by input ``index`` of ``op`` is shaped by (c_in, c_out, groups);
    None for a reader this module does not know."""
    if op == "Conv" and index == 1:
        kernel = tuple(attrs.get("kernel_shape", ()))
        return lambda ci, co, g: (co, ci // g, *kernel)
    if (op == "Conv" and index == 2) or (op == "Gemm" and index == 2):
        return lambda ci, co, g: (co,)
    if op == "Gemm" and index == 1 and attrs.get("transB", 0):
        return lambda ci, co, g: (co, ci)
    if op in ("Gemm", "MatMul") and index == 1:
        return lambda ci, co, g: (ci, co)
    if op == "BatchNormalization" and index >= 1:
        return lambda ci, co, g: (ci,)
    return None


class NoTemplate(ValueError):
    """A unit graph that :class:`_GraphTemplate` cannot re-dimension (it is exported)."""


@dataclass(frozen=True)
class _Weight:
    name: str
    shape: Shape
    values: np.ndarray  # the first _VALUE_SAMPLE values of the exported weight


class _GraphTemplate:
    """One exported unit graph, re-dimensioned for other channel counts of its structure.

    Every initializer must be a weight whose shape follows from the channel counts
    (:func:`_weight_shape`), and the exported shapes must match; anything else raises
    :class:`NoTemplate`. Weights of other shapes repeat the exported values (their
    distribution, e.g. positive batch-norm variances, carries over).
    """

    def __init__(self, model_bytes: bytes, unit: UnitConfig) -> None:
        import onnx
        from onnx import numpy_helper

        if unit.dtype != "float32":
            raise NoTemplate(f"dtype {unit.dtype}")
        if unit.layout != "nchw" or unit.uses_heads:  # channels not at dim 1
            raise NoTemplate(f"{unit.layout} {unit.op} unit with {unit.heads} heads")
        model = onnx.load_from_string(model_bytes)
        graph = model.graph
        weights: list[_Weight] = []
        roles = _initializer_roles(graph)
        for init in graph.initializer:
            shapers = [_weight_shape(op, i, attrs) for op, i, attrs in roles[init.name]]
            shapes = {s(unit.in_channels, unit.out_channels, unit.groups) for s in shapers if s}
            if not shapers or None in shapers or shapes != {tuple(init.dims)}:
                raise NoTemplate(f"initializer {init.name} read as {roles[init.name]}")
            values = numpy_helper.to_array(init).reshape(-1)[:_VALUE_SAMPLE].copy()
            weights.append(_Weight(init.name, shapers[0], values))
        out = graph.output
        if len(out) != 1 or out[0].name != "y" or _dims(out[0])[1:2] != [unit.out_channels]:
            raise NoTemplate("the output is not y with out_channels at dim 1")
        del graph.initializer[:]
        del graph.value_info[:]
        self.skeleton = model.SerializeToString()
        self.weights = tuple(weights)
        self.depthwise = unit.is_depthwise

    def instantiate(self, unit: UnitConfig, inputs: tuple[torch.Tensor, ...]) -> bytes:
        """The graph of ``unit`` (same structure, other channel counts) for ``inputs``."""
        import onnx
        from onnx import numpy_helper

        model = onnx.load_from_string(self.skeleton)
        graph = model.graph
        for value, tensor in zip(graph.input, inputs, strict=True):
            _set_dims(value, tuple(tensor.shape))
        batch, _, *spatial = _dims(graph.output[0])
        _set_dims(graph.output[0], (batch, unit.out_channels, *spatial))
        ci, co, g = unit.in_channels, unit.out_channels, unit.groups
        for w in self.weights:
            data = np.resize(w.values, w.shape(ci, co, g))
            graph.initializer.append(numpy_helper.from_array(data, w.name))
        if self.depthwise:
            for node in graph.node:
                for attr in node.attribute:
                    if node.op_type == "Conv" and attr.name == "group":
                        attr.i = g
        return model.SerializeToString()


def _dims(value) -> list[int]:
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def _set_dims(value, shape: tuple[int, ...]) -> None:
    dims = value.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise NoTemplate(f"rank {len(dims)} graph value {value.name} for shape {shape}")
    for dim, size in zip(dims, shape, strict=True):
        dim.dim_value = size


class _ProbeNet(nn.Module):
    """stem conv-bn-relu, then a residual block: the patterns whose fusion we detect."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))
        self.head = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return self.head(torch.relu(self.conv2(self.conv1(y)) + y))


@cache
def probe_fusion(provider: str, graph_optimization: str) -> str:
    """Which :data:`~ttmpd.profiler.FUSIONS` mode ORT applies with these settings.

    Optimises :class:`_ProbeNet` (4 convs, 3 BNs, 3 ReLUs, 1 residual Add) and counts what
    is left: BNs left -> ``none``; ReLUs left after the convs -> ``conv-bn``; the Add left ->
    ``conv-bn-act``; everything folded into convs -> ``conv-bn-add-act``.
    """
    import onnx

    net = _ProbeNet().eval()
    model_bytes = export_onnx(net, (torch.randn(1, 16, 16, 16),))
    config = BackendConfig(provider=provider, graph_optimization=graph_optimization)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        ort_session(model_bytes, config, optimized_path=path)
        ops = [n.op_type for n in onnx.load(path).graph.node]
    if "BatchNormalization" in ops:
        return "none"
    if ops.count("Relu") >= 2:
        return "conv-bn"
    if "Add" in ops or "Sum" in ops:
        return "conv-bn-act"
    return "conv-bn-add-act"


@cache
def probe_attention_parts(provider: str, graph_optimization: str) -> bool:
    """Whether ORT runs scaled dot-product attention as its parts (matmul, softmax, matmul)
    with these settings: read from its optimised graph of one exported attention, which is
    either a fused ``Attention``/``MultiHeadAttention`` node or keeps its ``Softmax``."""
    import onnx

    q = torch.randn(1, 2, 8, 16)
    model_bytes = export_onnx(_AttentionProbe().eval(), (q, q, q))
    config = BackendConfig(provider=provider, graph_optimization=graph_optimization)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        ort_session(model_bytes, config, optimized_path=path)
        ops = [n.op_type for n in onnx.load(path).graph.node]
    return "Softmax" in ops


class _AttentionProbe(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return nn.functional.scaled_dot_product_attention(q, k, v)


@BACKENDS.register
class OnnxRuntimeBackend(BackendBase):
    """ONNX Runtime with a selectable execution provider (CPU by default).

    ``fusion`` is detected with :func:`probe_fusion` for the configured provider and graph
    optimisation level, followed by ``+attention-parts`` where
    :func:`probe_attention_parts` finds attention left as its parts.
    With ``all`` on x86 (NCHWc layout), ORT also converts tensors between
    NCHW and blocked NCHWc layouts; in a whole model that happens at layout boundaries, while
    an isolated unit pays it on its own inputs and outputs. Unit sums therefore over-estimate
    ``all`` somewhat; the latency predictor's calibration accounts for the difference.
    """

    name = "onnxruntime"

    @property
    def fusion(self) -> str:  # type: ignore[override]
        self.require_available()
        conv = probe_fusion(self.config.provider, self.config.graph_optimization)
        parts = probe_attention_parts(self.config.provider, self.config.graph_optimization)
        return conv + (ATTENTION_PARTS if parts else "")

    @property
    def compute_device(self) -> str:
        name, index = ort_device(self.config)
        return "cpu" if name == "cpu" else f"{name}:{index}"

    def unavailable_reason(self) -> str:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed; pip install onnxruntime"
        available = ort.get_available_providers()
        if self.config.provider not in available:
            return (
                f"execution provider {self.config.provider} is not available "
                f"(available: {', '.join(available)})"
            )
        return ""

    def fingerprint(self) -> DeviceFingerprint:
        gpu = ""
        if ort_device(self.config)[0] != "cpu":  # the GPU the provider runs on
            from .torch_cuda import gpu_description

            index = self.config.device
            gpu = gpu_description(index) if torch.cuda.is_available() else f"cuda:{index}"
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=library_versions("onnxruntime", "onnx", "torch"),
            provider=self.config.provider,
            graph_optimization=self.config.graph_optimization,
            extra_info=(("opset", str(self.config.opset)),),
            gpu=gpu,
        )

    def probe_rules(self) -> DeviceRules:
        """The blocked-layout (NCHWc) rule, read from ORT's optimised graphs of probe convs
        (:func:`observe_conv_layouts`, :func:`~ttmpd.profiler._rules.infer_blocked_rule`)."""
        self.require_available()
        start = time.perf_counter()
        rule = infer_blocked_rule(lambda specs: observe_conv_layouts(specs, self.config))
        if rule is not None:
            overhead_ms, ns_per_element = probe_reorder_cost(self.config)
            rule = replace(rule, reorder_overhead_ms=overhead_ms,
                           reorder_ns_per_element=ns_per_element)  # fmt: skip
        streaming = self.probe_streaming(rule)
        return DeviceRules(
            blocked=rule,
            probe_seconds=time.perf_counter() - start,
            call_overhead_ms=self.probe_call_overhead_ms(),
            streaming=streaming,
        )

    def __init__(self, config: BackendConfig | None = None, *, reuse_graphs: bool = True) -> None:
        """``reuse_graphs=False`` exports every unit afresh (how tables were built before
        graphs were re-dimensioned; kept to compare against)."""
        super().__init__(config)
        self.reuse_graphs = reuse_graphs
        self._templates: dict[tuple, _GraphTemplate | None] = {}

    def unit_runner(self, unit: UnitConfig) -> Runner:
        """A runner of ``unit``: its structure's graph re-dimensioned when one was exported
        before, else a fresh export (kept as the structure's template)."""
        key = unit_structure(unit)
        template = self._templates.get(key) if self.reuse_graphs else None
        if template is not None:
            inputs = _inputs(unit, getattr(torch, unit.dtype), torch.Generator().manual_seed(0))
            try:
                return self._session_runner(template.instantiate(unit, inputs), inputs)
            except NoTemplate:
                self._templates[key] = None  # export this structure every time
        module, inputs = build_unit(unit)
        model_bytes = self._export(module, inputs)
        if self.reuse_graphs and key not in self._templates:
            try:
                self._templates[key] = _GraphTemplate(model_bytes, unit)
            except NoTemplate:
                self._templates[key] = None  # export this structure every time
        return self._session_runner(model_bytes, inputs)

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        return self._session_runner(self._export(module, inputs), inputs)

    def _export(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> bytes:
        try:
            return export_onnx(module, inputs, self.config.opset)
        except Exception as exc:  # the exporter raises many types; report one line
            raise InputError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc

    def _session_runner(self, model_bytes: bytes, inputs: tuple[torch.Tensor, ...]) -> Runner:
        return bound_runner(ort_session(model_bytes, self.config), self.config, inputs)


class _ConvBank(nn.Module):
    """Independent 3x3 convs, one input and one output each (one graph for many probes)."""

    def __init__(self, specs: Sequence[tuple[int, int, int]]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1, groups=g) for i, o, g in specs)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(conv(x) for conv, x in zip(self.convs, xs, strict=True))


def observe_conv_layouts(
    specs: Sequence[tuple[int, int, int]], config: BackendConfig
) -> list[ConvLayout | None]:
    """How ORT's optimised graph runs each ``(c_in, c_out, groups)`` 3x3 conv.

    All probe convs go into one graph (one export, one session); each conv node of the
    optimised graph is traced back to its graph input. A conv in the ``com.microsoft.nchwc``
    domain runs blocked; its weight initializer's shape gives the padded channel counts.
    """
    import onnx

    bank = _ConvBank(specs).eval()
    inputs = tuple(torch.randn(1, i, 8, 8) for i, _, _ in specs)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            bank, inputs, buffer, dynamo=False, opset_version=config.opset,
            input_names=[f"x{i}" for i in range(len(specs))],
            output_names=[f"y{i}" for i in range(len(specs))],
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        ort_session(buffer.getvalue(), config, optimized_path=path)
        graph = onnx.load(path).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    found: list[ConvLayout | None] = [None] * len(specs)
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        source = node.input[0]
        while source in producer:  # back through layout reorders to the graph input
            source = producer[source].input[0]
        if not source.startswith("x") or node.input[1] not in shapes:
            continue
        weight = shapes[node.input[1]]
        index = int(source[1:])
        groups = specs[index][2]
        padded_in = weight[1] * (groups if groups > 1 else 1)
        found[index] = ConvLayout(node.domain == "com.microsoft.nchwc", padded_in, weight[0])
    return found


#: Tensors the reorder probe converts, ``(channels, height = width)``: one channel count
#: that fills whole blocks of any vector width, three sizes for the line's two coefficients.
_REORDER_SHAPES = ((64, 8), (64, 16), (64, 32))
#: Extra reorder pairs in the long probe graph (its time minus the short one's is theirs).
_REORDER_PAIRS = 8


def _reorder_graph(channels: int, hw: int, pairs: int, opset: int) -> bytes:
    """``ReorderInput -> (ReorderOutput -> ReorderInput) x pairs -> ReorderOutput`` on a
    ``(1, channels, hw, hw)`` tensor: ORT's own NCHWc layout conversions, nothing else."""
    from onnx import TensorProto, helper

    domain = "com.microsoft.nchwc"
    nodes, name = [helper.make_node("ReorderInput", ["x0"], ["b0"], domain=domain)], "b0"
    for i in range(pairs):
        nodes.append(helper.make_node("ReorderOutput", [name], [f"p{i}"], domain=domain,
                                      channels=channels))  # fmt: skip
        nodes.append(helper.make_node("ReorderInput", [f"p{i}"], [f"b{i + 1}"], domain=domain))
        name = f"b{i + 1}"
    nodes.append(helper.make_node("ReorderOutput", [name], ["y"], domain=domain, channels=channels))
    shape = [1, channels, hw, hw]
    graph = helper.make_graph(
        nodes, "reorders", [helper.make_tensor_value_info("x0", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(domain, 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def probe_reorder_cost(config: BackendConfig, repeats: int = 3) -> tuple[float, float]:
    """``(reorder_overhead_ms, reorder_ns_per_element)`` of one NCHWc layout reorder on this
    device: graphs of ``ReorderInput``/``ReorderOutput`` pairs (graph optimisation off, so
    none is removed) timed with and without :data:`_REORDER_PAIRS` extra pairs, per tensor
    size of :data:`_REORDER_SHAPES`; ``ms per reorder = (t_long - t_short) / (2·pairs)``,
    the median of ``repeats`` alternations, then a line over the sizes
    (:func:`~ttmpd.profiler._rules.fit_reorder_cost`). About a second. ``(0, 0)`` where the
    provider runs no such op (reorders are then left unpriced)."""
    plain = replace(config, graph_optimization="disable")
    timing = TimingConfig(max_seconds=0.1, target_rel_ci=0.01)
    samples = []
    for channels, hw in _REORDER_SHAPES:
        x = torch.randn(1, channels, hw, hw)
        try:
            runners = [
                bound_runner(ort_session(_reorder_graph(channels, hw, n, config.opset), plain),
                             plain, (x,))
                for n in (0, _REORDER_PAIRS)
            ]  # fmt: skip
        except Exception:
            return 0.0, 0.0
        extra = [measure(runners[1], timing).median_ms - measure(runners[0], timing).median_ms
                 for _ in range(repeats)]  # fmt: skip
        samples.append(
            (channels * hw * hw, max(float(np.median(extra)), 0.0) / (2 * _REORDER_PAIRS))
        )
    return fit_reorder_cost(samples)


def bound_runner(session, config: BackendConfig, inputs: Sequence[torch.Tensor]) -> Runner:
    """A :data:`~ttmpd.profiler._timing.Runner` of ``session`` on ``inputs``, bound once
    (:func:`bind_inputs`)."""
    binding = bind_inputs(session, config, inputs)

    def run(number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            session.run_with_iobinding(binding)
        return (time.perf_counter() - start) * 1e3

    return run
