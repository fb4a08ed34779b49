"""Latency units: the smallest pieces of a model that a backend runs and that we time.

A :class:`UnitConfig` holds everything that determines a unit's latency on a fixed device:
op kind, batch, channels, spatial size, kernel, stride, padding, dilation, groups, fused
epilogue and dtype. It is a flat, frozen record so that it maps one-to-one onto the columns
of a latency table. :func:`build_unit` turns a config back into a runnable module and inputs,
which is how every backend measures it.

Op kinds (``op``)::

    conv       2-D convolution; depthwise/grouped via ``groups``; optional fused ``bn``/``act``;
               ``n_inputs=2`` adds a fused residual input (output-shaped) before ``act``
    linear     fully connected on (batch, in_channels)
    bn         batch norm (inference) on (N, C, H, W)
    act        element-wise activation named by ``act`` (relu, relu6, silu, sigmoid, ...)
    maxpool    max pooling with kernel/stride/padding/dilation/ceil_mode
    avgpool    average pooling with kernel/stride/padding/ceil_mode
    gap        adaptive average pooling to ``out_h`` x ``out_w`` (1x1 = global average pool)
    add        element-wise sum of ``n_inputs`` tensors (``broadcast``: 2nd is N x C x 1 x 1)
    mul        element-wise product (``broadcast``: squeeze-excitation style N x C x 1 x 1)
    cat        channel concatenation of ``n_inputs`` tensors totalling ``in_channels``
    softmax    softmax over the last dim: of (batch, in_channels), or of attention scores
               (batch, heads, in_h, in_channels / heads) when ``in_h > 1``
    layernorm  layer norm over the channels (the last dim of an ``nhwc`` tensor)
    rmsnorm    RMS norm over the channels, like ``layernorm``
    matmul     batched product of two activations (batch, heads, in_h, K) @ (batch, heads,
               K, M) with ``in_channels = heads·K``, ``out_channels = heads·M``: attention
               scores (K = head dim, M = key tokens) and weighted values (K = key tokens,
               M = head dim)
    sdpa       scaled dot-product attention, one fused kernel: queries (batch, heads, in_h,
               d), keys and values (batch, heads, in_w, d / dv) with ``in_channels =
               heads·d``, ``out_channels = heads·dv``; ``in_h``/``out_h`` are the query
               tokens, ``in_w`` the key tokens
    embedding  table lookup of (batch, in_h) integer ids into ``in_channels`` rows of
               ``out_channels`` features
    copy       a view op that had to copy (a permuted tensor made contiguous): with
               ``groups > 1`` a channel shuffle of (batch, groups, channels / groups, h, w),
               else the last two dims of the tensor swapped

Layouts (``layout``): ``nchw`` (channels at dim 1; ``linear`` and ``softmax`` on 2-D
inputs use ``in_h = in_w = out_h = out_w = 1``) or ``nhwc``: channels last, the tensor is
(batch, in_h, in_w, channels), and a token tensor (batch, tokens, channels) is ``nhwc``
with ``in_h = tokens``, ``in_w = 1``. Pruning changes channels, never tokens or height.
On ``nhwc`` tensors, ``cat`` joins tokens (dim 1) of inputs with equal channels,
``gap`` averages the tokens, ``mul`` with ``broadcast`` scales each channel (layer scale).
``mul`` with one input multiplies by a scalar.

Attention units (``heads > 1``, or ``matmul``/``sdpa``) are pruned in whole heads:
:func:`with_channels` keeps the per-head sizes and changes ``heads``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from ..errors import InputError

OP_KINDS = (
    "conv",
    "linear",
    "bn",
    "act",
    "maxpool",
    "avgpool",
    "gap",
    "add",
    "mul",
    "cat",
    "softmax",
    "layernorm",
    "rmsnorm",
    "matmul",
    "sdpa",
    "embedding",
    "copy",
)
LAYOUTS = ("nchw", "nhwc")
#: Ops whose channel dimension is made of attention heads (``heads`` is the prunable count).
HEAD_OPS = frozenset({"matmul", "sdpa"})
#: Fields added after the first table schema; the key names them only when they differ
#: from these defaults, so keys of earlier tables stay valid.
OPTIONAL_FIELDS = {"layout": "nchw", "heads": 1}
ACTIVATIONS = (
    "relu",
    "relu6",
    "hardtanh",
    "sigmoid",
    "silu",
    "hardswish",
    "hardsigmoid",
    "gelu",
    "tanh",
    "leaky_relu",
    "elu",
    "mish",
)
DTYPES = ("float32", "float16", "bfloat16", "float64")
#: Activations that ONNX Runtime's CPU provider fuses into a preceding Conv (FusedConv).
ORT_FUSABLE_ACTIVATIONS = frozenset(
    {"relu", "relu6", "hardtanh", "sigmoid", "tanh", "leaky_relu", "hardsigmoid"}
)
_NO_DEFAULT = object()
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


@dataclass(frozen=True)
class UnitConfig:
    """One latency unit. All sizes are element counts; ``dtype`` names a torch dtype."""

    op: str
    batch: int
    in_channels: int
    out_channels: int
    in_h: int = 1
    in_w: int = 1
    out_h: int = 1
    out_w: int = 1
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    groups: int = 1
    bias: bool = False
    bn: bool = False
    act: str = ""
    n_inputs: int = 1
    broadcast: bool = False
    ceil_mode: bool = False
    dtype: str = "float32"
    layout: str = "nchw"
    heads: int = 1

    def __post_init__(self) -> None:
        if self.op not in OP_KINDS:
            raise InputError(f"unknown unit op {self.op!r}; choose one of {', '.join(OP_KINDS)}")
        if self.act and self.act not in ACTIVATIONS:
            raise InputError(
                f"unknown activation {self.act!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.op == "act" and not self.act:
            raise InputError("an 'act' unit needs an activation name in 'act'")
        if self.dtype not in DTYPES:
            raise InputError(f"unsupported dtype {self.dtype!r}; choose one of {DTYPES}")
        if self.layout not in LAYOUTS:
            raise InputError(f"unknown layout {self.layout!r}; choose one of {LAYOUTS}")
        if self.heads < 1 or self.in_channels % self.heads or self.out_channels % self.heads:
            raise InputError(
                f"heads={self.heads} must be >= 1 and divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )
        for name in ("batch", "in_channels", "out_channels", "in_h", "in_w", "out_h", "out_w"):
            if getattr(self, name) < 1:
                raise InputError(f"unit {name} must be >= 1, got {getattr(self, name)}")
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise InputError(
                f"groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}"
            )

    # ----- identity -----------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Canonical string identifying the configuration (used to deduplicate and resume).

        Fields of :data:`OPTIONAL_FIELDS` appear only when they differ from their default."""
        return "|".join(
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if OPTIONAL_FIELDS.get(f.name, _NO_DEFAULT) != getattr(self, f.name)
        )

    @property
    def uses_heads(self) -> bool:
        """Whether the channels are made of attention heads (pruned in whole heads)."""
        return self.op in HEAD_OPS or self.heads > 1

    @property
    def is_depthwise(self) -> bool:
        return self.op == "conv" and self.groups > 1 and self.groups == self.in_channels

    def replace(self, **changes: object) -> UnitConfig:
        return dataclasses.replace(self, **changes)

    # ----- cost model inputs --------------------------------------------------------------
    @property
    def macs(self) -> int:
        """Multiply-accumulates: conv ``N*Co*Ho*Wo*(Ci/g)*Kh*Kw``, linear ``N*H*W*Ci*Co``,
        matmul ``N*H*Ci*Co/heads``, sdpa ``N*H*W*(Ci+Co)`` (scores and weighted values)."""
        if self.op == "conv":
            per_out = (self.in_channels // self.groups) * self.kernel_h * self.kernel_w
            return self.batch * self.out_channels * self.out_h * self.out_w * per_out
        if self.op == "linear":
            return self.batch * self.in_h * self.in_w * self.in_channels * self.out_channels
        if self.op == "matmul":
            return self.batch * self.in_h * self.in_channels * self.out_channels // self.heads
        if self.op == "sdpa":
            return self.batch * self.in_h * self.in_w * (self.in_channels + self.out_channels)
        return 0

    @property
    def params(self) -> int:
        """Learned parameters (conv/linear weights and bias; BN scale and shift)."""
        if self.op == "conv":
            n = (
                self.out_channels
                * (self.in_channels // self.groups)
                * self.kernel_h
                * self.kernel_w
            )
            return n + (self.out_channels if self.bias or self.bn else 0)
        if self.op == "linear":
            return self.in_channels * self.out_channels + (self.out_channels if self.bias else 0)
        if self.op in ("bn", "layernorm"):
            return 2 * self.in_channels
        if self.op == "rmsnorm":
            return self.in_channels
        if self.op == "embedding":
            return self.in_channels * self.out_channels
        return 0

    @property
    def input_elements(self) -> int:
        """Elements read from activations (all inputs; an embedding reads its ids)."""
        if self.op == "matmul":
            second = self.batch * self.in_channels * self.out_channels // self.heads
            return self.batch * self.in_h * self.in_channels + second
        if self.op == "sdpa":
            keys_values = self.batch * self.in_w * (self.in_channels + self.out_channels)
            return self.batch * self.in_h * self.in_channels + keys_values
        if self.op == "embedding":
            return self.batch * self.in_h * self.in_w
        first = self.batch * self.in_channels * self.in_h * self.in_w
        if self.op == "conv" and self.n_inputs > 1:
            return first + (self.n_inputs - 1) * self.output_elements
        if self.op in ("add", "mul"):
            other = self.batch * self.in_channels * (1 if self.broadcast else self.in_h * self.in_w)
            return first + (self.n_inputs - 1) * other
        return first

    @property
    def output_elements(self) -> int:
        return self.batch * self.out_channels * self.out_h * self.out_w

    @property
    def tokens(self) -> int:
        """Positions per sample: ``in_h · in_w`` (the tokens of an ``nhwc`` token tensor)."""
        return self.in_h * self.in_w

    @property
    def element_bytes(self) -> int:
        return _DTYPE_BYTES[self.dtype]


def conv_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """Output length of a convolution/pooling window: ``floor((s + 2p - d(k-1) - 1)/st) + 1``."""
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def with_channels(unit: UnitConfig, in_channels: int, out_channels: int) -> UnitConfig:
    """The same unit with other channel counts (depthwise convs keep ``groups == channels``).

    Ops whose output channels equal their input channels (bn, act, pools, add, mul) take
    ``in_channels`` for both. Attention units (:attr:`UnitConfig.uses_heads`) keep their
    per-head sizes: ``in_channels`` (a multiple of the per-head input size) sets the head
    count, and ``out_channels`` follows it.
    """
    if unit.uses_heads:
        per_in, per_out = unit.in_channels // unit.heads, unit.out_channels // unit.heads
        heads = max(1, in_channels // per_in)
        return unit.replace(in_channels=heads * per_in, out_channels=heads * per_out, heads=heads)
    if unit.op in ("conv", "linear", "embedding"):
        groups = unit.groups
        if unit.is_depthwise:
            groups = out_channels = in_channels
        return unit.replace(in_channels=in_channels, out_channels=out_channels, groups=groups)
    if unit.op == "cat":
        return unit.replace(in_channels=in_channels, out_channels=in_channels)
    return unit.replace(in_channels=in_channels, out_channels=in_channels)
