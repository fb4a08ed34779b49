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

import math
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import InputError
from ._composite import COMPOSITES, Step, attention_units
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
_ACT_OPS = {
    "relu": "relu",
    "sigmoid": "sigmoid",
    "silu": "silu",
    "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid",
    "gelu": "gelu",
    "tanh": "tanh",
    "leaky_relu": "leaky_relu",
    "elu": "elu",
    "mish": "mish",
}
# Ops that keep the channel count; channel constraints propagate through them.
_CHANNEL_PRESERVING = frozenset(
    {"bn", "act", "maxpool", "avgpool", "gap", "add", "mul", "layernorm", "rmsnorm"}
)
# Ops computing along the last dim: a rank-4 output has its channels last.
_LAST_DIM_OPS = frozenset({"linear", "layer_norm", "native_layer_norm", "rms_norm", "matmul"})
# View ops that copy when their input's strides do not allow a view (priced only if so).
_MAY_COPY = frozenset({"reshape", "flatten", "contiguous", "_reshape_alias", "unflatten"})


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


def _nchw(shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    if len(shape) == 4:
        return shape  # type: ignore[return-value]
    if len(shape) == 2:
        return shape[0], shape[1], 1, 1
    if len(shape) == 3:
        return shape[0], shape[1], shape[2], 1
    return None


def _pair(value, default: int) -> tuple[int, int]:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return default, default
    if isinstance(value, int):
        return value, value
    return (int(value[0]), int(value[-1])) if len(value) else (default, default)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _conv_config(x, w, bias, stride, padding, dilation, groups, out) -> UnitConfig:
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    sh, sw = _pair(stride, 1)
    dh, dw = _pair(dilation, 1)
    oh, ow = out.shape[2], out.shape[3]
    if isinstance(padding, str):  # "same"/"valid": recover the symmetric padding
        ph = max(0, ((oh - 1) * sh + dh * (kh - 1) + 1 - h) // 2)
        pw = max(0, ((ow - 1) * sw + dw * (kw - 1) + 1 - wd) // 2)
    else:
        ph, pw = _pair(padding, 0)
    return UnitConfig(
        op="conv", batch=n, in_channels=c, out_channels=w.shape[0], in_h=h, in_w=wd,
        out_h=oh, out_w=ow, kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph,
        pad_w=pw, dilation_h=dh, dilation_w=dw, groups=int(groups), bias=bias is not None,
        dtype=_dtype(x),
    )  # fmt: skip


def _pool_config(op: str, x, out, kernel, stride, padding, dilation, ceil_mode) -> UnitConfig:
    n, c, h, w = x.shape
    kh, kw = _pair(kernel, 1)
    sh, sw = _pair(stride, 0)
    if sh == 0:  # PyTorch: stride defaults to the kernel size
        sh, sw = kh, kw
    ph, pw = _pair(padding, 0)
    dh, dw = _pair(dilation, 1)
    return UnitConfig(
        op=op, batch=n, in_channels=c, out_channels=c, in_h=h, in_w=w, out_h=out.shape[2],
        out_w=out.shape[3], kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph,
        pad_w=pw, dilation_h=dh, dilation_w=dw, ceil_mode=bool(ceil_mode), dtype=_dtype(x),
    )  # fmt: skip


def _dims(x: torch.Tensor, last: bool) -> tuple[int, int, int, int, str] | None:
    """``(batch, channels, h, w, layout)`` of an activation: rank-3 tensors are tokens
    (batch, tokens, channels); rank-4 ones NCHW unless ``last`` (channels last)."""
    shape = tuple(x.shape)
    if len(shape) == 3:
        return shape[0], shape[2], shape[1], 1, "nhwc"
    if len(shape) == 4 and last:
        return shape[0], shape[3], shape[1], shape[2], "nhwc"
    dims = _nchw(shape)
    return None if dims is None else (*dims, "nchw")


def _elementwise(
    op: str, x: torch.Tensor, *, act: str = "", last: bool = False, **extra
) -> UnitConfig | None:
    dims = _dims(x, last)
    if dims is None:
        return None
    n, c, h, w, layout = dims
    return UnitConfig(
        op=op, batch=n, in_channels=c, out_channels=c, in_h=h, in_w=w, out_h=h, out_w=w,
        act=act, dtype=_dtype(x), layout=layout, **extra,
    )  # fmt: skip


def _binary(op: str, a, b, last: bool = False) -> UnitConfig | None:
    if isinstance(a, torch.Tensor) and (
        not isinstance(b, torch.Tensor) or b.dim() == 0 or b.numel() == 1
    ):
        return _elementwise(op, a, last=last) if op == "mul" else None  # times a scalar
    if not isinstance(b, torch.Tensor) or not isinstance(a, torch.Tensor):
        return None
    if a.shape == b.shape:
        return _elementwise(op, a, last=last, n_inputs=2)
    big, small = (a, b) if a.numel() >= b.numel() else (b, a)
    channels_last = big.dim() == 3 or (big.dim() == 4 and last)
    if channels_last and tuple(small.shape[1:]) == tuple(big.shape[1:]):
        return _elementwise(op, big, last=last, n_inputs=2)  # e.g. positions, batch-broadcast
    if channels_last and small.numel() == small.shape[-1] == big.shape[-1]:
        return _elementwise(op, big, last=last, n_inputs=2, broadcast=True)  # layer scale
    if big.dim() == 4 and tuple(small.shape[-2:]) == (1, 1) and small.shape[-3] == big.shape[1]:
        return _elementwise(op, big, n_inputs=2, broadcast=True)
    return None


def _attention_config(q, k, v, parts: bool = False) -> list[UnitConfig] | None:
    """Units of attention of queries (B, heads, N, d) over keys (B, heads, M, d) and values
    (B, heads, M, dv) (rank-3 operands are one head): one ``sdpa`` unit, or its parts
    (:func:`~ttmpd.profiler._composite.attention_units`); None for grouped-query
    attention."""
    if q.dim() not in (3, 4) or k.dim() != q.dim() or v.dim() != q.dim():
        return None
    heads = q.shape[1] if q.dim() == 4 else 1
    if q.dim() == 4 and (k.shape[1] != heads or v.shape[1] != heads):
        return None
    rows, d, keys, dv = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    return attention_units(q.shape[0], heads, rows, keys, d, dv, _dtype(q), parts)


def _matmul_config(a, b) -> UnitConfig | None:
    """A ``matmul`` unit for (B, [heads,] N, K) @ (B, [heads,] K, M) activations."""
    if a.dim() not in (3, 4) or b.dim() != a.dim() or a.shape[:-2] != b.shape[:-2]:
        return None
    heads = a.shape[1] if a.dim() == 4 else 1
    rows, inner, cols = a.shape[-2], a.shape[-1], b.shape[-1]
    return UnitConfig(
        op="matmul", batch=a.shape[0], heads=heads, in_channels=heads * inner,
        out_channels=heads * cols, in_h=rows, out_h=rows, dtype=_dtype(a),
    )  # fmt: skip


def _linear_config(x, w, bias: bool, last: bool) -> UnitConfig:
    """A ``linear`` unit: (batch, in) is ``nchw``; token and channels-last inputs
    (batch, ..., in) are ``nhwc`` with their positions in ``in_h``/``in_w``."""
    if x.dim() in (3, 4):
        n, _, h, wd, _ = _dims(x, True)
        return UnitConfig(
            op="linear", batch=n, in_channels=x.shape[-1], out_channels=w.shape[0], in_h=h,
            in_w=wd, out_h=h, out_w=wd, bias=bias, dtype=_dtype(x), layout="nhwc",
        )  # fmt: skip
    return UnitConfig(
        op="linear", batch=math.prod(x.shape[:-1]), in_channels=x.shape[-1],
        out_channels=w.shape[0], bias=bias, dtype=_dtype(x),
    )  # fmt: skip


def _norm(op: str, x, normalized_shape) -> UnitConfig | None:
    """Layer/RMS norm over the last dim only (the channels of a token tensor)."""
    if len(normalized_shape) != 1:
        return None
    if x.dim() == 2:
        return _elementwise(op, x)
    return _elementwise(op, x, last=True) if x.dim() in (3, 4) else None


def _classify(name: str, args: tuple, kwargs: dict, out, last: bool = False) -> UnitConfig | None:
    """UnitConfig for a recorded ATen op, or None when it has no unit kind (uncovered).

    ``last``: the first input is a channels-last rank-4 tensor (rank 3 is always tokens).
    """
    a = list(args) + [None] * 10
    if name == "conv2d":
        return _conv_config(a[0], a[1], a[2], a[3], a[4], a[5], a[6] or 1, out)
    if name in ("convolution", "_convolution"):
        if a[6]:  # transposed
            return None
        return _conv_config(a[0], a[1], a[2], a[3], a[4], a[5], a[8], out)
    if name == "linear":
        return _linear_config(a[0], a[1], a[2] is not None, last)
    if name in ("layer_norm", "native_layer_norm"):
        return _norm("layernorm", a[0], a[1])
    if name == "rms_norm":
        return _norm("rmsnorm", a[0], a[1])
    if name == "embedding":
        ids, table = a[1], a[0]
        if ids.dim() not in (1, 2):
            return None
        n, tokens = (1, ids.shape[0]) if ids.dim() == 1 else tuple(ids.shape)
        return UnitConfig(
            op="embedding", batch=n, in_channels=table.shape[0], out_channels=table.shape[1],
            in_h=tokens, out_h=tokens, dtype=_dtype(table), layout="nhwc",
        )  # fmt: skip
    if name == "scaled_dot_product_attention":
        units = _attention_config(a[0], a[1], a[2])
        return units[0] if units else None
    if name in ("matmul", "bmm") and a[1] is not None and a[1].dim() >= 3:
        return _matmul_config(a[0], a[1])
    if name == "matmul" and a[1] is not None and a[1].dim() == 2:  # activations @ weight
        return _linear_config(a[0], a[1].t(), False, last)
    if name in ("linear", "addmm", "mm"):
        x, w = (a[1], a[2]) if name == "addmm" else (a[0], a[1])
        in_c = x.shape[-1]
        out_c = w.shape[0] if name == "linear" else w.shape[1]
        has_bias = name == "addmm" or (name == "linear" and a[2] is not None)
        batch = math.prod(x.shape[:-1])
        return UnitConfig(
            op="linear", batch=batch, in_channels=in_c, out_channels=out_c, bias=has_bias,
            dtype=_dtype(x),
        )  # fmt: skip
    if name in ("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm"):
        return _elementwise("bn", a[0])
    base = name.rstrip("_")
    if base in _ACT_OPS:
        return _elementwise("act", a[0], act=_ACT_OPS[base], last=last)
    if base == "hardtanh":
        lo = a[1] if a[1] is not None else kwargs.get("min_val", -1.0)
        hi = a[2] if a[2] is not None else kwargs.get("max_val", 1.0)
        act = "relu6" if (lo, hi) == (0.0, 6.0) else "hardtanh"
        return _elementwise("act", a[0], act=act, last=last)
    if name in ("max_pool2d", "max_pool2d_with_indices"):
        result = out[0] if isinstance(out, tuple) else out
        return _pool_config("maxpool", a[0], result, a[1], a[2], a[3], a[4], a[5])
    if name == "avg_pool2d":
        return _pool_config("avgpool", a[0], out, a[1], a[2], a[3], 1, a[4])
    if name == "mean" and _token_mean(a[0], a[1], last):
        n, c, h, w, _ = _dims(a[0], True)
        return UnitConfig(
            op="gap", batch=n, in_channels=c, out_channels=c, in_h=h, in_w=w,
            dtype=_dtype(a[0]), layout="nhwc",
        )  # fmt: skip
    if name in ("adaptive_avg_pool2d", "_adaptive_avg_pool2d") or (
        name == "mean" and a[0].dim() == 4 and sorted(d % 4 for d in a[1]) == [2, 3]
    ):
        n, c, h, w = a[0].shape
        oh, ow = (out.shape[2], out.shape[3]) if out.dim() == 4 else (1, 1)
        return UnitConfig(
            op="gap", batch=n, in_channels=c, out_channels=c, in_h=h, in_w=w, out_h=oh,
            out_w=ow, dtype=_dtype(a[0]),
        )  # fmt: skip
    if base in ("add", "mul"):
        return _binary(base, a[0], a[1], last)
    if base == "div" and (not isinstance(a[1], torch.Tensor) or a[1].numel() == 1):
        return _elementwise("mul", a[0], last=last)  # by a scalar: priced as a product
    if name == "cat":
        tensors = a[0]
        dim = a[1] if a[1] is not None else kwargs.get("dim", 0)
        first = tensors[0]
        if first.dim() == 3 and dim % 3 == 1 and len({t.shape[2] for t in tensors}) == 1:
            tokens = sum(t.shape[1] for t in tensors)  # token concat (e.g. a class token)
            c = first.shape[2]
            return UnitConfig(
                op="cat", batch=first.shape[0], in_channels=c, out_channels=c, in_h=tokens,
                out_h=tokens, n_inputs=len(tensors), dtype=_dtype(first), layout="nhwc",
            )  # fmt: skip
        if first.dim() not in (2, 4) or dim % first.dim() != 1:
            return None
        total = sum(t.shape[1] for t in tensors)
        n, _, h, w = _nchw(tuple(first.shape))
        return UnitConfig(
            op="cat", batch=n, in_channels=total, out_channels=total, in_h=h, in_w=w, out_h=h,
            out_w=w, n_inputs=len(tensors), dtype=_dtype(first),
        )  # fmt: skip
    if name in ("_softmax", "softmax") and a[1] is not None and a[1] % a[0].dim() == a[0].dim() - 1:
        return _softmax_config(a[0])
    return None


def _softmax_config(x: torch.Tensor) -> UnitConfig | None:
    """Softmax over the last dim: (N, C) ``nchw``; (N, T, C) tokens; attention scores
    (N, heads, T, keys) with ``in_channels = heads·keys``."""
    if x.dim() == 2:
        n, c = x.shape
        return UnitConfig(op="softmax", batch=n, in_channels=c, out_channels=c, dtype=_dtype(x))
    if x.dim() == 3:
        return _elementwise("softmax", x, last=True)
    if x.dim() == 4:
        n, heads, rows, keys = x.shape
        return UnitConfig(
            op="softmax", batch=n, heads=heads, in_channels=heads * keys,
            out_channels=heads * keys, in_h=rows, out_h=rows, dtype=_dtype(x),
        )  # fmt: skip
    return None


def _token_mean(x: torch.Tensor, dims, last: bool) -> bool:
    """Whether ``mean(x, dims)`` averages the positions of a channels-last tensor."""
    if dims is None or isinstance(dims, int):
        dims = [dims] if isinstance(dims, int) else []
    wanted = {1} if x.dim() == 3 else {1, 2} if (x.dim() == 4 and last) else None
    return wanted is not None and {d % x.dim() for d in dims} == wanted


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
            last = name in _LAST_DIM_OPS or self._last(first)
        for t in outs:
            same = name in _LAST_DIM_OPS or name == "permute" or t.shape == first.shape
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
        if not sources:  # parameters/constants only (e.g. weight preparation): not model data
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
            units = _attention_config(*args[:3], parts=True)
            if units and _plain_attention(args, kwargs):
                steps = [(u, (i - 1,)) for i, u in enumerate(units)]
                steps[-1] = (units[-1], (1, -1))  # p·v reads the softmax and the values
                return self._steps(path, name, steps, sources, out)
        if name in COMPOSITES:
            steps = COMPOSITES[name](args, self.attention_parts)
            if steps:
                return self._steps(path, name, steps, sources, out)
        config = None if free else _classify(name, args, kwargs, out, self._last(args[0]))
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
