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

Layouts are read the same way. The plugin picks a memory layout per node (channels-last
``acdb`` for convolutions, say) and inserts Reorder nodes where a graph input or output is
planar NCHW. In a whole model that happens at its input and output only; a unit compiled
alone would pay it on its own input and output, which for small convs can cost more than
the conv. :func:`probe_unit_layouts` reads from the runtime graph of a probe net the layout
each unit kind runs in inside a model and, per kind, whether a unit declared in that layout
(a Transpose next to each input and the output of its exported graph) compiles to a graph
that executes no conversion: the plugin folds each such Transpose into a Reorder that does
not run. Units of those kinds are measured in that layout
(:meth:`OpenVinoBackend.unit_module`); the others as exported (planar).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import nn

from ...errors import InputError
from .._extract import ATTENTION_PARTS
from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._modules import build_unit
from .._rules import (
    RESIDUAL_VARIANT,
    DeviceRules,
    IsolationCost,
    probe_residual_isolation,
    unit_variant,
)
from .._timing import Runner
from .._units import OP_KINDS, UnitConfig
from ._base import BACKENDS, STREAMING_TIMING, BackendBase
from .ort import _ProbeNet, export_onnx

DEVICE = "CPU"
# Runtime nodes that hold data rather than run ops (``Output`` is named after the output).
_NOT_KERNELS = frozenset({"Input", "Output", "Const"})
# Runtime nodes that only move data between layouts.
_CONVERSIONS = frozenset({"Reorder", "Transpose"})
#: Isolation costs probed in this process, by backend settings.
_ISOLATION: dict[str, tuple[IsolationCost, ...]] = {}
_INSTALL_HINT = "openvino is not installed; pip install 'ttmpd[openvino]' (or pip install openvino)"


def openvino_compile(model_bytes: bytes, threads: int, profiling: bool = False) -> Any:
    """An ``openvino.CompiledModel`` of ONNX ``model_bytes`` on the CPU plugin.

    Pinned to ``threads`` inference threads, one stream, the ``LATENCY`` hint and
    ``ACCURACY`` execution mode (no down-casting below the model's precision). The thread
    count is read back: the plugin caps it at the cores it may use, and a table must not
    record threads that did not run. ``profiling``: per-node counters, for
    :func:`executed_conversions` (never for timing: the counters cost time).
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
        props.enable_profiling: profiling,
    }
    compiled = core.compile_model(core.read_model(model_bytes), DEVICE, settings)
    running = compiled.get_property(props.inference_num_threads)
    if running != threads:
        raise InputError(
            f"OpenVINO runs {running} inference threads, not the {threads} requested "
            f"(its {DEVICE} plugin caps threads at the available cores); pass threads <= {running}"
        )
    return compiled


@dataclass(frozen=True)
class RuntimeNode:
    """One node the plugin executes: its type (``Convolution``, ``Reorder``, ...), the
    original layers it absorbed (none for nodes the plugin created, like reorders) and the
    memory layout of its first output (``abcd`` planar, ``acdb`` channels-last, ...)."""

    layer_type: str
    original: tuple[str, ...]
    layout: str


def runtime_nodes(compiled: Any) -> list[RuntimeNode]:
    """The nodes of ``compiled``'s runtime graph, in execution order."""
    nodes = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str)
        nodes.append(
            RuntimeNode(
                info["layerType"].astype(str),
                tuple(n for n in names.split(",") if n),
                info["outputLayouts"].astype(str).split(",")[0],
            )
        )
    return nodes


def executed_conversions(compiled: Any, inputs: tuple[torch.Tensor, ...]) -> list[str]:
    """Names of the layout conversions (Reorder, Transpose) that run when ``compiled``
    (compiled with ``profiling=True``) infers ``inputs``. A conversion the plugin folded
    away stays in the runtime graph but does not run."""
    import openvino as ov

    if not compiled.get_property("PERF_COUNT"):
        raise InputError("executed_conversions needs a model compiled with profiling=True")
    request = compiled.create_infer_request()
    request.infer({f"x{i}": t.detach().cpu().numpy() for i, t in enumerate(inputs)})
    return [
        p.node_name
        for p in request.profiling_info
        if p.node_type in _CONVERSIONS and p.status == ov.ProfilingInfo.Status.EXECUTED
    ]


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


def _onnx_graph(model_bytes: bytes) -> tuple[Any, dict[str, int]]:
    """The ONNX graph and its node index by node name and by output name."""
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    index = {out: i for i, node in enumerate(graph.node) for out in node.output}
    index.update({node.name: i for i, node in enumerate(graph.node)})
    return graph, index


def onnx_kernels(model_bytes: bytes, compiled: Any) -> list[tuple[str, ...]]:
    """For each runtime node that runs ONNX ops, the types of those ops (sorted).

    An ONNX graph of Conv + Relu that the plugin fused gives ``[("Conv", "Relu")]``;
    unfused it gives ``[("Conv",), ("Relu",)]``. Raises ``RuntimeError`` when an ONNX op
    (other than constants) is found in no runtime node: an op that cannot be traced must
    not read as fused.
    """
    graph, index = _onnx_graph(model_bytes)
    kernels, seen = [], set()
    for node in runtime_nodes(compiled):
        if node.layer_type in _NOT_KERNELS:
            continue
        nodes = {_onnx_node(n, index) for n in node.original} - {None}
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


@cache
def probe_openvino_attention_parts() -> bool:
    """Whether the OpenVINO CPU plugin runs scaled dot-product attention as its parts: read
    from its runtime graph of one exported attention (a runtime node running the
    ``Softmax`` without both ``MatMul``s means the parts run as separate kernels; the scale
    products and the key transpose around it are constant-folded or cheap views)."""
    from .ort import _AttentionProbe

    q = torch.randn(1, 2, 8, 16)
    model_bytes = export_onnx(_AttentionProbe().eval(), (q, q, q))
    graph, index = _onnx_graph(model_bytes)
    for node in runtime_nodes(openvino_compile(model_bytes, threads=1)):
        ops = [
            graph.node[i].op_type for i in {_onnx_node(n, index) for n in node.original} - {None}
        ]
        if "Softmax" in ops:
            return ops.count("MatMul") < 2
    return True  # the softmax was not traced: price the parts


class _Fn(nn.Module):
    """A functional op as a named submodule (the ONNX export names nodes by module)."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


class _LayoutProbeNet(nn.Module):
    """An op of every unit kind, each where no conv can absorb it, as in a whole model.

    Submodules are named after the unit kinds (``conv`` holds a dense and a depthwise
    conv), so each ONNX node's kind is the first part of its name (``/conv.1/Conv``).
    """

    def __init__(self, c: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.ModuleList(
            [nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1, groups=c)]
        )
        self.maxpool = nn.MaxPool2d(3, 1, 1)
        self.act = nn.ReLU()
        self.add = _Fn(torch.add)
        self.mul = _Fn(torch.mul)
        self.bn = nn.BatchNorm2d(c)
        self.cat = _Fn(lambda *xs: torch.cat(xs, 1))
        self.avgpool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(2 * c, classes)
        self.softmax = nn.Softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.maxpool(self.conv[1](self.conv[0](x)))
        summed = self.add(self.act(pooled), pooled)
        joined = self.cat(self.bn(self.mul(summed, pooled)), summed)
        return self.softmax(self.linear(torch.flatten(self.gap(self.avgpool(joined)), 1)))


#: Units whose compiled graphs show whether the plugin runs a kind in a layout on its own,
#: by the name :func:`~ttmpd.profiler._rules.unit_variant` gives them.
_VARIANT_UNITS: dict[str, tuple[UnitConfig, ...]] = {
    "conv": (
        UnitConfig("conv", 1, 16, 16, 16, 16, 16, 16, 3, 3, 1, 1, 1, 1, bn=True, act="relu"),
        UnitConfig("conv", 1, 16, 16, 16, 16, 8, 8, 3, 3, 2, 2, 1, 1, groups=16, act="relu6"),
        UnitConfig("conv", 1, 16, 32, 16, 16, 16, 16),
    ),
    RESIDUAL_VARIANT: (
        UnitConfig("conv", 1, 16, 16, 16, 16, 16, 16, 3, 3, 1, 1, 1, 1, act="relu", n_inputs=2),
    ),
    "bn": (UnitConfig("bn", 1, 16, 16, 16, 16, 16, 16),),
    "act": (UnitConfig("act", 1, 16, 16, 16, 16, 16, 16, act="relu"),),
    "maxpool": (UnitConfig("maxpool", 1, 16, 16, 16, 16, 8, 8, 3, 3, 2, 2, 1, 1),),
    "avgpool": (UnitConfig("avgpool", 1, 16, 16, 16, 16, 8, 8, 2, 2, 2, 2),),
    "gap": (UnitConfig("gap", 1, 16, 16, 16, 16, 1, 1),),
    "add": (UnitConfig("add", 1, 16, 16, 16, 16, 16, 16, n_inputs=2),),
    "mul": (UnitConfig("mul", 1, 16, 16, 16, 16, 16, 16, n_inputs=2, broadcast=True),),
    "cat": (UnitConfig("cat", 1, 32, 32, 16, 16, 16, 16, n_inputs=2),),
}


def layout_order(layout: str) -> tuple[int, ...] | None:
    """The dimension order of a plain layout string (``acdb`` -> ``(0, 2, 3, 1)``); None for
    blocked layouts (``aBcd16b``) and anything else that is not a permutation."""
    order = tuple(ord(ch) - ord("a") for ch in layout)
    return order if sorted(order) == list(range(len(order))) else None


class _InLayout(nn.Module):
    """``module`` taking its inputs and returning its output stored in dimension ``order``;
    ``copy_out``: through an identity max pool (window 1) before the output permute."""

    def __init__(self, module: nn.Module, order: tuple[int, ...], copy_out: bool) -> None:
        super().__init__()
        self.module = module
        self.order = order
        self.inverse = tuple(order.index(d) for d in range(len(order)))
        self.copy_out = copy_out

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        y = self.module(*(x.permute(self.inverse) for x in xs))
        return (nn.functional.max_pool2d(y, 1) if self.copy_out else y).permute(self.order)


def in_layout(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], layout: str, copy_out: bool = False
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """``(module, inputs)`` with every input and the output stored in ``layout``: inputs
    permuted to it, the module wrapped to permute back and forth, so its ONNX graph holds a
    Transpose next to each input and the output and computes the same function.
    Unchanged for a planar layout or one of another rank than the tensors.

    ``copy_out`` puts an identity max pool (window 1, a copy) before the output Transpose:
    the plugin does not fold that Transpose into a Reorder right after a conv that adds
    its residual in place, and a copy costs less than the conversion it then runs.
    """
    order = layout_order(layout)
    if order is None or order == tuple(range(len(order))):
        return module, inputs
    with torch.inference_mode():
        out = module(*inputs)
    if any(t.dim() != len(order) for t in (*inputs, out)):
        return module, inputs
    wrapped = _InLayout(module, order, copy_out and len(order) == 4)
    wrapped.eval()  # the export restores the wrapper's mode, and with it the unit's
    return wrapped, tuple(t.permute(order).contiguous() for t in inputs)


@dataclass(frozen=True)
class UnitLayouts:
    """What :func:`probe_unit_layouts` found.

    ``in_model``: ``(unit kind, layout)`` pairs, the layout each kind runs in inside a
    model. ``measured``: ``(variant, layout)`` pairs
    (:func:`~ttmpd.profiler._rules.unit_variant`) of the variants whose isolated units run
    that layout without a conversion, and are measured in it;
    ``copied``: those of them that need ``copy_out`` (:func:`in_layout`) for it.
    ``kept``: variants with a non-planar model layout whose isolated units still convert
    (measured as exported). ``seconds``: how long the probe took.
    """

    in_model: tuple[tuple[str, str], ...]
    measured: tuple[tuple[str, str], ...]
    copied: tuple[str, ...]
    kept: tuple[str, ...]
    seconds: float

    def declared(self, unit: UnitConfig) -> tuple[str, bool]:
        """``(layout, copy_out)`` that ``unit`` is measured in (``""``: as exported; always
        for channels-last and attention units, whose layouts the probe does not cover)."""
        if unit.layout != "nchw" or unit.uses_heads:
            return "", False
        variant = unit_variant(unit.op, unit.n_inputs)
        return dict(self.measured).get(variant, ""), variant in self.copied

    def notes(self) -> tuple[str, ...]:
        measured = ", ".join(
            f"{v} ({layout}{', output copied' if v in self.copied else ''})"
            for v, layout in self.measured
        )
        notes = [f"units measured in their model layout: {measured or 'none'}"]
        if self.kept:
            notes.append(
                "measured planar, the plugin converts around them when alone: "
                + ", ".join(self.kept)
            )
        return tuple(notes)


def model_layouts(model_bytes: bytes, compiled: Any) -> dict[str, str]:
    """Unit kind -> layout, read from a compiled :class:`_LayoutProbeNet`: each runtime
    node's ONNX ops give its kinds (a node holding a conv or linear is that kind only; the
    ops fused into it say nothing of their own layout). A kind found in nodes of several
    layouts takes the most common."""
    graph, index = _onnx_graph(model_bytes)
    seen: dict[str, Counter] = {}
    for node in runtime_nodes(compiled):
        if node.layer_type in _NOT_KERNELS or node.layer_type in _CONVERSIONS:
            continue
        onnx_nodes = {_onnx_node(n, index) for n in node.original} - {None}
        kinds = {graph.node[i].name.lstrip("/").split("/")[0].split(".")[0] for i in onnx_nodes}
        kinds &= set(OP_KINDS)
        kinds = ({"conv", "linear"} & kinds) or kinds
        for kind in kinds:
            seen.setdefault(kind, Counter())[node.layout] += 1
    return {kind: layouts.most_common(1)[0][0] for kind, layouts in sorted(seen.items())}


def runs_alone_in(unit: UnitConfig, layout: str, threads: int, copy_out: bool = False) -> bool:
    """Whether ``unit`` declared in ``layout`` (:func:`in_layout`) compiles to a graph that
    executes no layout conversion."""
    module, inputs = in_layout(*build_unit(unit), layout, copy_out)
    model_bytes = export_onnx(module, inputs)
    return not executed_conversions(openvino_compile(model_bytes, threads, True), inputs)


@cache
def probe_unit_layouts(threads: int = 1) -> UnitLayouts:
    """The layout each unit kind runs in inside a model, and the variants measured in it.

    Compiles :class:`_LayoutProbeNet` and reads each kind's layout off the runtime graph
    (:func:`model_layouts`). Each variant of :data:`_VARIANT_UNITS` whose kind runs in a
    non-planar plain layout is then compiled alone, declared in that layout; it is measured
    in the layout if none of its units executes a conversion (:func:`runs_alone_in`), else
    if none does with its output copied, else as exported.
    """
    start = time.perf_counter()
    with torch.random.fork_rng():  # random probe weights leave the caller's stream alone
        net = _LayoutProbeNet().eval()
        model_bytes = export_onnx(net, (torch.randn(1, 16, 16, 16),))
        in_model = model_layouts(model_bytes, openvino_compile(model_bytes, threads))
        measured, copied, kept = [], [], []
        for variant, units in _VARIANT_UNITS.items():
            layout = in_model.get(units[0].op, "")
            order = layout_order(layout)
            if order is None or order == tuple(range(len(order))):
                continue
            if all(runs_alone_in(u, layout, threads) for u in units):
                measured.append((variant, layout))
            elif all(runs_alone_in(u, layout, threads, copy_out=True) for u in units):
                measured.append((variant, layout))
                copied.append(variant)
            else:
                kept.append(variant)
    seconds = time.perf_counter() - start
    return UnitLayouts(
        tuple(in_model.items()), tuple(measured), tuple(copied), tuple(kept), seconds
    )


@BACKENDS.register
class OpenVinoBackend(BackendBase):
    """OpenVINO's CPU plugin (``pip install 'ttmpd[openvino]'``).

    ``fusion`` is detected with :func:`probe_openvino_fusion`. ``config.threads`` sets the
    inference threads; OpenVINO has no inter-op pool, one stream runs the graph.

    Units are measured in the layout their kind runs in inside a model where the plugin
    runs them alone without a conversion (:func:`probe_unit_layouts`, recorded in the
    table's device rules); the others as exported, paying the conversions a whole model
    does not (the latency predictor's calibration accounts for the rest).
    """

    name = "openvino"

    @property
    def fusion(self) -> str:  # type: ignore[override]
        self.require_available()
        parts = probe_openvino_attention_parts()
        return probe_openvino_fusion() + (ATTENTION_PARTS if parts else "")

    def unit_layouts(self) -> UnitLayouts:
        """:func:`probe_unit_layouts` with this backend's threads (probed once a process)."""
        self.require_available()
        return probe_unit_layouts(self.config.threads)

    def probe_rules(self) -> DeviceRules:
        """The layout each unit kind runs in inside a model (``unit_layouts``), with notes on
        which kinds are measured in it. No blocked-layout rule: the runtime graph names no
        padded channel counts (a kind in a blocked layout such as ``aBcd16b`` is recorded,
        and its units are measured as exported)."""
        found = self.unit_layouts()
        return DeviceRules(
            unit_layouts=found.in_model,
            probe_seconds=found.seconds,
            notes=found.notes(),
            call_overhead_ms=self.probe_call_overhead_ms(),
            streaming=self.probe_streaming(),
            isolation=self.probe_isolation_costs(found),
        )

    def probe_isolation_costs(self, found: UnitLayouts) -> tuple[IsolationCost, ...]:
        """What a ``conv+residual`` unit measured with its output copied (``found.copied``,
        :func:`in_layout`) pays that it does not inside a model, where the plugin adds the
        residual in place and copies nothing: each of :data:`ISOLATION_SHAPES` measured
        alone as the table measures it, minus the same conv without the residual input,
        fitted as ``overhead + ns·output elements``
        (:func:`~ttmpd.profiler._rules.probe_residual_isolation`). Empty when no residual
        conv is copied. Each figure the median of three measurements."""
        if RESIDUAL_VARIANT not in found.copied:
            return ()

        def ms(unit: UnitConfig) -> float:
            return sorted(self.measure(unit, STREAMING_TIMING).median_ms for _ in range(3))[1]

        key = repr(self.config)  # probed once a process, as the streaming is
        if key not in _ISOLATION:
            _ISOLATION[key] = (probe_residual_isolation(ms),)
        return _ISOLATION[key]

    def unit_module(self, unit: UnitConfig) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """``(module, inputs)`` of ``unit`` as this backend measures it: :func:`build_unit`'s,
        declared in its variant's measured layout (:func:`in_layout`), if any."""
        return in_layout(*build_unit(unit), *self.unit_layouts().declared(unit))

    def unit_runner(self, unit: UnitConfig) -> Runner:
        return self._runner(*self.unit_module(unit))

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
