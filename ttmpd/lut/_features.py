"""Regression features of latency units, computed column-wise from table-shaped frames.

Input: a DataFrame with the configuration columns of the LUT schema (``op`` ... ``dtype``)
and the derived counts (``macs``, ``params``, ``input_elements``, ``output_elements``).
Output: a float matrix, one row per unit, with the columns of :data:`FEATURE_NAMES`:

* op kind one-hot, fused-epilogue flags (``bn``, activation present, residual input),
  depthwise flag;
* log1p of MACs, params, input/output elements (latency spans 4 decades, so the regressor
  fits ``log(latency_ms)``);
* raw shape: batch, channels, spatial size, kernel, stride, groups;
* vector-width alignment: ``c mod 8``, ``c mod 16``, whether ``c`` is a multiple of 4, and
  log1p of the MACs with channels rounded up to multiples of 8 (CPU kernels process channel
  blocks; a misaligned count costs like the next multiple). The multiple-of-4 flags are
  there because ONNX Runtime's blocked-layout (NCHWc) kernels take channel counts divisible
  by 4 and fall back to much slower generic kernels otherwise: a misaligned depthwise conv
  costs 2-4x an aligned one with more channels (measured on MobileNetV2 LUTs);
* blocked-layout hints (:func:`blocked_layout_mask`): whether a conv qualifies for a blocked
  (NCHWc) kernel, whether its input is narrow enough (``c_in <= 16``) to be read in plain
  NCHW, and log1p of the MACs with the channel padding a 16-wide block implies. Without
  them the trees had to find the rule from sparse off-grid rows and mis-priced off-grid
  convs by 20-30% (ResNet-20 on ONNX Runtime: ``7->7`` +26%, ``19->38`` -33%).

:func:`unit_work` is the size measure the predictor normalises latency by.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..profiler import OP_KINDS, UnitConfig
from ._schema import CONFIG_COLUMNS

FEATURE_NAMES: tuple[str, ...] = (
    *(f"op_{op}" for op in OP_KINDS),
    "bn",
    "has_act",
    "residual",
    "depthwise",
    "log_macs",
    "log_params",
    "log_in_elems",
    "log_out_elems",
    "log_macs_ceil8",
    "log_macs_block16",
    "blocked",
    "in_le16",
    "batch",
    "in_channels",
    "out_channels",
    "in_hw",
    "out_hw",
    "kernel",
    "stride",
    "groups",
    "in_mod8",
    "out_mod8",
    "in_mod16",
    "out_mod16",
    "in_align4",
    "out_align4",
    "n_inputs",
    "broadcast",
)


def configs_frame(configs: list[UnitConfig]) -> pd.DataFrame:
    """A table-shaped frame (configuration + derived columns + key) for unit configs."""
    frame = pd.DataFrame([{c: getattr(u, c) for c in CONFIG_COLUMNS} for u in configs])
    if frame.empty:
        frame = pd.DataFrame(columns=list(CONFIG_COLUMNS))
    return with_derived_columns(frame)


def with_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``macs, params, input_elements, output_elements`` and ``key``, column-wise.

    The vectorised twin of :class:`UnitConfig`'s properties and key (a test checks they
    agree); used to price thousands of pruned configurations without building objects.
    """
    frame = frame.copy()
    op = frame["op"].to_numpy()
    v = {c: frame[c].to_numpy(dtype=np.int64) for c in (
        "batch", "in_channels", "out_channels", "in_h", "in_w", "out_h", "out_w", "kernel_h",
        "kernel_w", "groups", "n_inputs",
    )}  # fmt: skip
    bias = frame["bias"].to_numpy(dtype=bool)
    bn = frame["bn"].to_numpy(dtype=bool)
    broadcast = frame["broadcast"].to_numpy(dtype=bool)
    conv, linear = op == "conv", op == "linear"
    groups = np.maximum(v["groups"], 1)
    out_elems = v["batch"] * v["out_channels"] * v["out_h"] * v["out_w"]
    kernel = v["kernel_h"] * v["kernel_w"]
    conv_macs = out_elems * (v["in_channels"] // groups) * kernel
    lin_macs = v["batch"] * v["in_channels"] * v["out_channels"]
    frame["macs"] = np.where(conv, conv_macs, np.where(linear, lin_macs, 0))
    conv_params = v["out_channels"] * (v["in_channels"] // groups) * kernel + np.where(
        bias | bn, v["out_channels"], 0
    )
    lin_params = v["in_channels"] * v["out_channels"] + np.where(bias, v["out_channels"], 0)
    frame["params"] = np.select(
        [conv, linear, op == "bn"], [conv_params, lin_params, 2 * v["in_channels"]], 0
    )
    first = v["batch"] * v["in_channels"] * v["in_h"] * v["in_w"]
    extra_in = v["n_inputs"] - 1
    binary_other = v["batch"] * v["in_channels"] * np.where(broadcast, 1, v["in_h"] * v["in_w"])
    frame["input_elements"] = first + np.select(
        [conv & (extra_in > 0), np.isin(op, ("add", "mul"))],
        [extra_in * out_elems, extra_in * binary_other],
        0,
    )
    frame["output_elements"] = out_elems
    key = None
    for c in CONFIG_COLUMNS:
        part = c + "=" + frame[c].astype(str)
        key = part if key is None else key + "|" + part
    frame["key"] = key if key is not None else pd.Series(dtype=str)
    return frame


def _ceil(x: np.ndarray, multiple: int) -> np.ndarray:
    return np.ceil(x / multiple) * multiple


def unit_features(frame: pd.DataFrame) -> np.ndarray:
    """Feature matrix (n_units, len(FEATURE_NAMES)) of a table-shaped frame."""
    n = len(frame)
    f = {name: np.zeros(n) for name in FEATURE_NAMES}
    op = frame["op"].to_numpy()
    for kind in OP_KINDS:
        f[f"op_{kind}"] = (op == kind).astype(float)
    num = {c: frame[c].to_numpy(dtype=float) for c in (
        "batch", "in_channels", "out_channels", "in_h", "in_w", "out_h", "out_w", "kernel_h",
        "kernel_w", "stride_h", "groups", "n_inputs", "macs", "params", "input_elements",
        "output_elements",
    )}  # fmt: skip
    cin, cout, groups = num["in_channels"], num["out_channels"], num["groups"]
    f["bn"] = frame["bn"].to_numpy(dtype=float)
    f["has_act"] = (frame["act"].astype(str).to_numpy() != "").astype(float)
    is_conv = op == "conv"
    f["residual"] = (is_conv & (num["n_inputs"] > 1)).astype(float)
    depthwise = is_conv & (groups > 1) & (groups == cin)
    f["depthwise"] = depthwise.astype(float)
    f["log_macs"] = np.log1p(num["macs"])
    f["log_params"] = np.log1p(num["params"])
    f["log_in_elems"] = np.log1p(num["input_elements"])
    f["log_out_elems"] = np.log1p(num["output_elements"])
    per_group_in = np.where(depthwise, 1.0, _ceil(cin / np.maximum(groups, 1), 8))
    spatial_out = num["out_h"] * num["out_w"]
    macs8 = (
        num["batch"]
        * _ceil(cout, 8)
        * spatial_out
        * per_group_in
        * num["kernel_h"]
        * (num["kernel_w"])
    )
    f["log_macs_ceil8"] = np.where(is_conv | (op == "linear"), np.log1p(macs8), 0.0)
    blocked = blocked_layout_mask(frame)
    f["log_macs_block16"] = np.where(blocked, np.log1p(block_macs(frame)), f["log_macs"])
    f["blocked"] = blocked.astype(float)
    f["in_le16"] = (cin <= BLOCK).astype(float)
    f["batch"] = num["batch"]
    f["in_channels"], f["out_channels"] = cin, cout
    f["in_hw"] = num["in_h"] * num["in_w"]
    f["out_hw"] = spatial_out
    f["kernel"] = num["kernel_h"] * num["kernel_w"]
    f["stride"] = num["stride_h"]
    f["groups"] = groups
    f["in_mod8"], f["out_mod8"] = cin % 8, cout % 8
    f["in_mod16"], f["out_mod16"] = cin % 16, cout % 16
    f["in_align4"], f["out_align4"] = (cin % 4 == 0).astype(float), (cout % 4 == 0).astype(float)
    f["n_inputs"] = num["n_inputs"]
    f["broadcast"] = frame["broadcast"].to_numpy(dtype=float)
    return np.column_stack([f[name] for name in FEATURE_NAMES])


def unit_work(frame: pd.DataFrame, blocked: np.ndarray | None = None) -> np.ndarray:
    """Size of each unit's work: ``max(MACs, input elements + output elements) + 1``.

    Compute-bound units (conv, linear) scale with MACs, memory-bound ones (activations, adds,
    pooling) with the elements they read and write. ``blocked`` (a mask, e.g.
    :func:`blocked_layout_mask`) marks convs that run a blocked (NCHWc) kernel: their MACs
    count with the channel padding of the block (:func:`block_macs`), since a ``16->4``
    conv computes a whole 16-wide output block and costs what ``16->16`` does. Shape:
    ``(n_units,)``, unitless counts.
    """
    macs = frame["macs"].to_numpy(dtype=float)
    if blocked is not None and np.any(blocked):
        macs = np.where(blocked, block_macs(frame), macs)
    elements = frame["input_elements"].to_numpy(dtype=float) + frame["output_elements"].to_numpy(
        dtype=float
    )
    return np.maximum(macs, elements) + 1.0


BLOCK = 16
"""Channel block of blocked (NCHWc) conv kernels: 16 fp32 lanes of AVX-512."""


def blocked_layout_mask(frame: pd.DataFrame) -> np.ndarray:
    """True for convs that qualify for a blocked (NCHWc) kernel. Shape ``(n_units,)``.

    The rule ONNX Runtime 1.32 applies on this x86 host (probed conv by conv, channel
    counts 1-69): a dense conv if ``c_in <= 16`` (read straight from NCHW) or ``c_in`` is a
    multiple of 4, any ``c_out`` (padded up to the block); a depthwise conv if its channels
    are a multiple of 4; other grouped convs never. Other backends have their own rules;
    the regressor only takes this as a hint, and the calibration fits its slope.

    In a whole model, chains of such convs skip the layout conversions each isolated unit
    pays, so the calibration gives them their own slope.
    """
    conv = frame["op"].to_numpy() == "conv"
    c_in = frame["in_channels"].to_numpy(dtype=np.int64)
    groups = np.maximum(frame["groups"].to_numpy(dtype=np.int64), 1)
    depthwise = (groups > 1) & (groups == c_in)
    dense = (groups == 1) & ((c_in <= BLOCK) | (c_in % 4 == 0))
    return conv & np.where(depthwise, c_in % 4 == 0, dense)


def block_macs(frame: pd.DataFrame) -> np.ndarray:
    """Conv MACs as a blocked (NCHWc) kernel computes them, padding included: ``c_out``
    rounded up to :data:`BLOCK`; ``c_in`` too, unless it is read unblocked (``<= BLOCK``)
    or the conv is depthwise. Shape ``(n_units,)``; only meaningful for convs."""
    num = {c: frame[c].to_numpy(dtype=float) for c in (
        "batch", "in_channels", "out_channels", "out_h", "out_w", "kernel_h", "kernel_w",
        "groups",
    )}  # fmt: skip
    cin, groups = num["in_channels"], np.maximum(num["groups"], 1)
    depthwise = (groups > 1) & (groups == cin)
    in_block = np.where(depthwise, 1.0, np.where(cin <= BLOCK, cin, _ceil(cin, BLOCK)) / groups)
    return (
        num["batch"] * _ceil(num["out_channels"], BLOCK) * num["out_h"] * num["out_w"]
        * in_block * num["kernel_h"] * num["kernel_w"]
    )  # fmt: skip


#: PyTorch CPU runs a batch-1 dense conv with a kernel of at most 3 on its native
#: im2col + GEMM path (``slow_conv2d``) when the input has at most this many elements.
NATIVE_CONV_MAX_INPUT = 20480


def native_conv_mask(frame: pd.DataFrame, threads: int = 1) -> np.ndarray:
    """True for convs eager PyTorch (CPU, float32) runs on its native ``slow_conv2d`` path
    rather than oneDNN. Shape ``(n_units,)``.

    The rule, checked with the profiler conv by conv on torch 2.13: oneDNN if the conv is
    grouped, or both kernel sides exceed 3, or the batch exceeds 1, or the input has more
    than :data:`NATIVE_CONV_MAX_INPUT` elements; but a 1x1, stride-1, undilated conv on
    one thread with a batch below 16 always takes the native path.

    Measured inside whole models, native convs run 1.1-1.4x their isolated time while
    oneDNN convs stay near 1.0x (ResNet-18 at 224: its layer-4 convs fall below the input
    threshold once pruned), so the calibration gives them their own slope.
    """
    num = {c: frame[c].to_numpy(dtype=np.int64) for c in (
        "batch", "in_channels", "in_h", "in_w", "kernel_h", "kernel_w", "stride_h",
        "stride_w", "dilation_h", "dilation_w", "groups",
    )}  # fmt: skip
    conv = frame["op"].to_numpy() == "conv"
    onednn = (
        (num["groups"] > 1)
        | ((num["kernel_h"] > 3) & (num["kernel_w"] > 3))
        | (num["batch"] > 1)
        | (num["batch"] * num["in_channels"] * num["in_h"] * num["in_w"] > NATIVE_CONV_MAX_INPUT)
    )
    pointwise = (
        (num["kernel_h"] == 1) & (num["kernel_w"] == 1) & (num["stride_h"] == 1)
        & (num["stride_w"] == 1) & (num["dilation_h"] == 1) & (num["dilation_w"] == 1)
    )  # fmt: skip
    single_thread_pointwise = pointwise & (num["batch"] < 16) & (threads <= 1)
    return conv & (~onednn | single_thread_pointwise)
