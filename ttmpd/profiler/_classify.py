"""Classification: the :class:`UnitConfig` of one recorded ATen op, or None (uncovered).

Shapes are read with their layout: rank-4 tensors are NCHW unless the recorder tracked them
as channels last (``last``), rank-3 tensors are tokens (batch, tokens, channels), rank-2
ones (batch, channels). See :mod:`ttmpd.profiler._units` for the unit kinds.
"""

from __future__ import annotations

import math

import torch

from ._composite import attention_units
from ._units import UnitConfig

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
# Ops computing along the last dim: a rank-4 output has its channels last.
LAST_DIM_OPS = frozenset({"linear", "layer_norm", "native_layer_norm", "rms_norm", "matmul"})


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


def attention_config(q, k, v, parts: bool = False) -> list[UnitConfig] | None:
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


def classify(name: str, args: tuple, kwargs: dict, out, last: bool = False) -> UnitConfig | None:
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
        units = attention_config(a[0], a[1], a[2])
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
        name == "mean" and a[0].dim() == 4 and sorted(d % 4 for d in a[1] or ()) == [2, 3]
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


def copy_config(x: torch.Tensor, last: bool) -> UnitConfig | None:
    """A ``copy`` unit for a view op that copied its input ``x``: rank 5 is a channel
    shuffle, ``x`` the (batch, channels / groups, groups, h, w) transposed view of grouped
    channels; ranks 2-4 by their layout."""
    if x.dim() == 5:
        n, per, g, h, w = x.shape
        return UnitConfig(
            op="copy", batch=n, in_channels=g * per, out_channels=g * per, in_h=h, in_w=w,
            out_h=h, out_w=w, groups=g, dtype=_dtype(x),
        )  # fmt: skip
    return _elementwise("copy", x, last=last)
