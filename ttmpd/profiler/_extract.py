"""Layer extraction: list the latency units of any ``nn.Module`` for a given backend.

The model runs once on the example input under ``torch.inference_mode`` while a
``TorchDispatchMode`` records every ATen operator that executes, with its argument shapes,
the module path it ran in (from forward hooks), and which earlier operator produced each of
its inputs. Working at the ATen level means functional calls (``out + identity``,
``torch.cat``, ``x * se``) are seen exactly like modules are, and no op that costs time can
hide: every recorded op is either

* a **unit** (priced by the latency table),
* **free** (views and eval-mode no-ops such as ``view``, ``flatten``, ``dropout``), or
* **uncovered** (costs time but has no unit kind yet): returned in ``Extraction.uncovered``
  so callers can warn — never silently dropped.

Fusion follows what the backend actually runs (see :data:`FUSIONS`):

* ``"none"`` (eager PyTorch, CPU or CUDA): every op is its own kernel launch, one unit each.
* ``"conv-bn"``: BatchNormalization folded into the preceding Conv (ONNX Runtime "basic").
* ``"conv-bn-act"`` (ONNX Runtime "extended"): the BN is folded and a following
  Relu/Clip/Sigmoid/Tanh/LeakyRelu/HardSigmoid is fused into a FusedConv.
* ``"conv-bn-add-act"`` (ONNX Runtime "all" on x86, NCHWc layout): additionally a residual
  Add that consumes the conv output is fused into the conv (with the activation after it).

A conv absorbs a following op only if the intermediate tensor has no other consumer and is
not a model output. The ONNX Runtime backend does not assume a mode: it optimises a probe
graph and reads which of these fusions happened
(:func:`ttmpd.profiler.backends.ort.probe_fusion`); a test checks the unit counts against
ORT's optimised graphs of zoo models.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import InputError
from ._classify import LAST_DIM_OPS, attention_config, classify, copy_config
from ._composite import COMPOSITES, Step
from ._units import ORT_FUSABLE_ACTIVATIONS, UnitConfig

FUSIONS = ("none", "conv-bn", "conv-bn-act", "conv-bn-add-act")
ATTENTION_PARTS = "+attention-parts"
"""Suffix of a fusion whose backend runs scaled dot-product attention as its parts."""
INPUT = -1  # producer index of the model input

_FREE_OPS = frozenset(
    {
        "view", "_unsafe_view", "reshape", "flatten", "t", "transpose", "permute", "expand",
        "squeeze", "unsqueeze", "alias", "detach", "slice", "select", "dropout",
        "feature_dropout", "alpha_dropout", "lift_fresh", "unflatten", "view_as", "expand_as",
        "contiguous", "_reshape_alias", "identity", "split", "chunk", "unbind", "narrow",
    }
)  # fmt: skip
# Ops that keep the channel count; channel constraints propagate through them.
_CHANNEL_PRESERVING = frozenset(
    {"bn", "act", "maxpool", "avgpool", "gap", "add", "mul", "layernorm", "rmsnorm", "copy"}
)
# View ops that copy when their input's strides do not allow a view (priced only if so).
_MAY_COPY = frozenset({"reshape", "flatten", "contiguous", "_reshape_alias", "unflatten"})
# Factories that read only their input's shape and dtype (Swin's shifted-window mask is built
# with ``x.new_zeros``): their outputs are constants, like an ``arange``, not model data.
_SHAPE_ONLY_OPS = frozenset(
    {"new_zeros", "new_ones", "new_empty", "new_full", "zeros_like", "ones_like", "empty_like",
     "full_like"}
)  # fmt: skip


@dataclass(frozen=True)
class LayerUnit:
    """One unit of an extracted model.

    ``inputs`` are the indices of the units producing this unit's tensor inputs (``-1`` for
    the model input). ``fixed_in``/``fixed_out`` mark channel dimensions that pruning cannot
    change (the image channels, the classifier outputs).
    """

    index: int
    name: str
    aten: str
    config: UnitConfig
    inputs: tuple[int, ...]
    fixed_in: bool
    fixed_out: bool


@dataclass(frozen=True)
class UncoveredOp:
    """An operator that costs time but has no unit kind: ``aten`` name, module path, shapes."""

    name: str
    aten: str
    shapes: str


@dataclass(frozen=True)
class Extraction:
    """Units of a model, plus what was not priced."""

    units: tuple[LayerUnit, ...]
    uncovered: tuple[UncoveredOp, ...]
    free_ops: tuple[tuple[str, int], ...]
    fusion: str

    def to_frame(self):
        """A pandas DataFrame with one row per unit: name, aten, inputs, fixed flags, config."""
        import pandas as pd

        rows = [
            {
                "index": u.index,
                "name": u.name,
                "aten": u.aten,
                "inputs": ",".join(map(str, u.inputs)),
                "fixed_in": u.fixed_in,
                "fixed_out": u.fixed_out,
                "macs": u.config.macs,
                **{k: getattr(u.config, k) for k in u.config.__dataclass_fields__},
            }
            for u in self.units
        ]
        return pd.DataFrame(rows)


@dataclass
class _Node:
    name: str
    aten: str
    config: UnitConfig
    inputs: list[int]
    consumers: list[int] = field(default_factory=list)
    outputs_model: bool = False


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


class _Recorder(TorchDispatchMode):
    def __init__(self, scope: list[str], attention_parts: bool = False) -> None:
        super().__init__()
        self.scope = scope
        self.attention_parts = attention_parts
        self.nodes: list[_Node] = []
        self.producer: dict[int, int] = {}
        self.keepalive: list[torch.Tensor] = []  # ids stay unique while we hold references
        self.uncovered: list[UncoveredOp] = []
        self.free: Counter[str] = Counter()
        self.channels_last: set[int] = set()  # ids of rank-4 tensors with channels last

    def _source(self, t: torch.Tensor) -> int | None:
        return self.producer.get(id(t))

    def _last(self, obj) -> bool:
        return isinstance(obj, torch.Tensor) and id(obj) in self.channels_last

    def _track_layout(self, name: str, args: tuple, outs: list[torch.Tensor]) -> None:
        """Which rank-4 outputs are channels last: those of ops computing along the last
        dim (linear, norms), a permute moving dim 1 last, and any same-shaped output of a
        channels-last input (activations, adds, dropout)."""
        first = args[0] if args else None
        if not isinstance(first, torch.Tensor):
            return
        if name == "permute" and first.dim() == 4:
            order = tuple(d % 4 for d in args[1])
            last = not self._last(first) and order == (0, 2, 3, 1)
        else:
            last = name in LAST_DIM_OPS or self._last(first)
        for t in outs:
            same = name in LAST_DIM_OPS or name == "permute" or t.shape == first.shape
            if last and t.dim() == 4 and same:
                self.channels_last.add(id(t))

    def _add(self, name: str, aten: str, config: UnitConfig, sources: list[int]) -> int:
        index = len(self.nodes)
        unique_sources = list(dict.fromkeys(sources))
        self.nodes.append(_Node(name=name, aten=aten, config=config, inputs=unique_sources))
        for s in unique_sources:
            if s != INPUT:
                self.nodes[s].consumers.append(index)
        return index

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        ins = _tensors(args) + _tensors(kwargs)
        sources = [s for s in (self._source(t) for t in ins) if s is not None]
        outs = _tensors(out)
        self.keepalive.extend(ins + outs)
        if not sources or name in _SHAPE_ONLY_OPS:  # parameters/constants: not model data
            return out
        if outs and not any(t.is_floating_point() for t in outs):
            # index arithmetic (position ids from token ids, masks): no float work, no unit
            self.free[name] += 1
            for t in outs:
                self.producer[id(t)] = sources[0]
            return out
        self._track_layout(name, args, outs)
        path = self.scope[-1] if self.scope else ""
        free = name in _FREE_OPS or (name.endswith("_") and name[:-1] in _FREE_OPS)  # dropout_
        if free and not (name in _MAY_COPY and _copied(ins, outs)):
            self.free[name] += 1
            for t in outs:
                self.producer[id(t)] = sources[0]
            return out
        if name == "scaled_dot_product_attention" and self.attention_parts:
            units = attention_config(*args[:3], parts=True)
            if units and _plain_attention(args, kwargs):
                steps = [(u, (i - 1,)) for i, u in enumerate(units)]
                steps[-1] = (units[-1], (1, -1))  # p·v reads the softmax and the values
                return self._steps(path, name, steps, sources, out)
        if name in COMPOSITES:
            steps = COMPOSITES[name](args, self.attention_parts)
            if steps:
                return self._steps(path, name, steps, sources, out)
        last = self._last(args[0])
        config = copy_config(ins[0], last) if free else classify(name, args, kwargs, out, last)
        if name == "scaled_dot_product_attention" and not _plain_attention(args, kwargs):
            config = None
        if config is None:
            shapes = ", ".join(str(tuple(t.shape)) for t in ins)
            aten = f"{name} (copy)" if free else name
            self.uncovered.append(UncoveredOp(name=path, aten=aten, shapes=shapes))
            for t in outs:
                self.producer[id(t)] = sources[0]
            return out
        index = self._add(path, name, config, sources)
        for t in outs[:1]:
            self.producer[id(t)] = index
        return out

    def _steps(self, path: str, name: str, steps: list[Step], sources: list[int], out):
        """Record the chained units of one op (``steps``: see :mod:`._composite`); the op's
        first output is the last step's."""
        local: list[int] = []
        for config, inputs in steps:
            src = [s for i in inputs for s in (sources if i < 0 else [local[i]])]
            local.append(self._add(path, name, config, src or [INPUT]))
        for t in _tensors(out)[:1]:
            self.producer[id(t)] = local[-1]
        return out


def _plain_attention(args: tuple, kwargs: dict) -> bool:
    """Attention without a mask, causal masking or dropout (the kind priced as a unit)."""
    a = list(args) + [None] * 8
    mask = a[3] if a[3] is not None else kwargs.get("attn_mask")
    dropout = a[4] if a[4] is not None else kwargs.get("dropout_p", 0.0)
    causal = a[5] if a[5] is not None else kwargs.get("is_causal", False)
    return mask is None and not dropout and not causal


def _copied(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> bool:
    """Whether a view op materialised a copy: its output shares no storage with its input."""
    if not ins or not outs:
        return False
    try:
        src = ins[0].untyped_storage().data_ptr()
        return all(t.untyped_storage().data_ptr() != src for t in outs)
    except (RuntimeError, NotImplementedError):  # storage-less tensors: views
        return False


def _record(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], attention_parts: bool = False
) -> _Recorder:
    scope: list[str] = []
    handles = []
    for path, module in model.named_modules():

        def pre(_m, _a, path=path):
            scope.append(path)

        def post(_m, _a, _o):
            scope.pop()

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    recorder = _Recorder(scope, attention_parts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            inputs = tuple(t.clone() for t in inputs)
            for t in inputs:
                recorder.producer[id(t)] = INPUT
                recorder.keepalive.append(t)
            with recorder:
                output = model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for t in _tensors(output):
        source = recorder.producer.get(id(t))
        if source is not None and source != INPUT:
            recorder.nodes[source].outputs_model = True
    return recorder


def _exclusive_next(nodes: list[_Node], i: int, op: str) -> int | None:
    """The single consumer of node ``i`` if it has kind ``op`` and ``i`` is not an output."""
    node = nodes[i]
    if len(node.consumers) == 1 and not node.outputs_model:
        j = node.consumers[0]
        if nodes[j].config.op == op:
            return j
    return None


def _fuse(nodes: list[_Node], fusion: str) -> list[_Node]:
    """Merge conv -> bn [-> add] -> act chains the way the backend does (module docstring)."""
    with_add = fusion == "conv-bn-add-act"
    with_act = fusion in ("conv-bn-act", "conv-bn-add-act")
    merged_into: dict[int, int] = {}
    for i, node in enumerate(nodes):
        if node.config.op != "conv" or i in merged_into:
            continue
        chain, config, extra_inputs = [i], node.config, []
        j = _exclusive_next(nodes, i, "bn")
        if j is not None:
            chain.append(j)
            config = config.replace(bn=True)
        j = _exclusive_next(nodes, chain[-1], "add") if with_add else None
        if j is not None and j not in merged_into:
            add = nodes[j].config
            if add.n_inputs == 2 and not add.broadcast and add.in_channels == config.out_channels:
                chain.append(j)
                config = config.replace(n_inputs=2)
                extra_inputs = [s for s in nodes[j].inputs if s != chain[-2]]
        j = _exclusive_next(nodes, chain[-1], "act") if with_act else None
        if j is not None and nodes[j].config.act in ORT_FUSABLE_ACTIVATIONS:
            chain.append(j)
            config = config.replace(act=nodes[j].config.act)
        if len(chain) == 1:
            continue
        last = nodes[chain[-1]]
        node.config = config
        node.aten = "+".join(nodes[k].aten for k in chain)
        node.inputs = list(dict.fromkeys([*node.inputs, *extra_inputs]))
        node.consumers = list(last.consumers)
        node.outputs_model = last.outputs_model
        for k in chain[1:]:
            merged_into[k] = i
    keep = [i for i in range(len(nodes)) if i not in merged_into]
    new_index = {old: new for new, old in enumerate(keep)}

    def remap(i: int) -> int:
        return INPUT if i == INPUT else new_index[merged_into.get(i, i)]

    fused = []
    for old in keep:
        node = nodes[old]
        node.inputs = list(dict.fromkeys(remap(s) for s in node.inputs))
        node.consumers = list(dict.fromkeys(remap(c) for c in node.consumers))
        fused.append(node)
    return fused


def _fixed_dims(nodes: list[_Node]) -> tuple[list[bool], list[bool]]:
    """Channel dims pruning cannot change: image channels in, classifier channels out.

    Propagates through channel-preserving ops (bn, act, pools, add, mul) in both directions.
    """
    fixed_in = [INPUT in n.inputs for n in nodes]
    fixed_out = [n.outputs_model for n in nodes]
    changed = True
    while changed:
        changed = False
        for i, n in enumerate(nodes):
            preserving = n.config.op in _CHANNEL_PRESERVING
            if preserving and fixed_in[i] != fixed_out[i] and (fixed_in[i] or fixed_out[i]):
                fixed_in[i] = fixed_out[i] = True
                changed = True
            if fixed_in[i]:
                for s in n.inputs:
                    if s != INPUT and not fixed_out[s]:
                        fixed_out[s] = changed = True
            if fixed_out[i]:
                for c in n.consumers:
                    if not fixed_in[c] and nodes[c].config.op in _CHANNEL_PRESERVING:
                        fixed_in[c] = changed = True
    return fixed_in, fixed_out


def split_fusion(fusion: str) -> tuple[str, bool]:
    """``(conv fusion, attention_parts)`` of a fusion name: one of :data:`FUSIONS`, followed
    by :data:`ATTENTION_PARTS` when the backend runs attention as matmul, softmax, matmul
    rather than one fused kernel (the default)."""
    conv_fusion = fusion.removesuffix(ATTENTION_PARTS)
    if conv_fusion not in FUSIONS:
        raise InputError(
            f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}, optionally "
            f"followed by {ATTENTION_PARTS!r}"
        )
    return conv_fusion, conv_fusion != fusion


def extract_units(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    fusion: str = "none",
) -> Extraction:
    """List the latency units of ``model`` on ``example_input`` (shape ``(N, C, H, W)``, or
    integer token ids for a text encoder).

    ``fusion`` is one of :data:`FUSIONS`, optionally followed by :data:`ATTENTION_PARTS`
    (:func:`split_fusion`); backends expose theirs as ``Backend.fusion``.
    The model is run once in eval mode; its training
    flag is restored afterwards.
    """
    conv_fusion, attention_parts = split_fusion(fusion)
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    recorder = _record(model, inputs, attention_parts)
    nodes = recorder.nodes
    if conv_fusion != "none":
        nodes = _fuse(nodes, conv_fusion)
    fixed_in, fixed_out = _fixed_dims(nodes)
    counts: Counter[str] = Counter()
    units = []
    for i, n in enumerate(nodes):
        counts[n.name] += 1
        suffix = f"#{counts[n.name] - 1}" if counts[n.name] > 1 else ""
        units.append(
            LayerUnit(
                index=i,
                name=(n.name or "<model>") + suffix,
                aten=n.aten,
                config=n.config,
                inputs=tuple(n.inputs),
                fixed_in=fixed_in[i],
                fixed_out=fixed_out[i],
            )
        )
    return Extraction(
        units=tuple(units),
        uncovered=tuple(recorder.uncovered),
        free_ops=tuple(sorted(recorder.free.items())),
        fusion=fusion,
    )


__all__ = [
    "ATTENTION_PARTS",
    "FUSIONS",
    "INPUT",
    "Extraction",
    "LayerUnit",
    "UncoveredOp",
    "extract_units",
    "split_fusion",
]
