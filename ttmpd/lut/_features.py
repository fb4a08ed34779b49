"""Regression features of latency units, computed column-wise from table-shaped frames.

Input: a DataFrame with the configuration columns of the LUT schema (``op`` ... ``dtype``)
and the derived counts (``macs``, ``params``, ``input_elements``, ``output_elements``).
Output: a float matrix, one row per unit, with the columns of :data:`FEATURE_NAMES`:

* op kind one-hot, fused-epilogue flags (``bn``, activation present, residual input),
  depthwise flag;
* log1p of MACs, params, input/output elements (latency spans 4 decades, so the regressor
  fits ``log(latency_ms)``);
* raw shape: batch, channels, spatial size (tokens for token units; query x key tokens for
  ``sdpa``), kernel, stride, groups;
* layout and attention: channels last (``nhwc``: tokens, ConvNeXt), heads, and the
  per-head input size (head dim of scores and sdpa, key tokens of weighted values);
* generic alignment: ``c mod 8``, ``c mod 16``, whether ``c`` is a multiple of 4, and
  log1p of the MACs with channels rounded up to multiples of 8 (the regressor learns from
  the table which of them matter on the device);
* blocked-layout hints from the device's probed rule (:func:`blocked_layout_mask`, see
  :mod:`ttmpd.profiler._rules`): whether a conv runs a blocked kernel, whether it reads its
  input unpadded, and log1p of the MACs with the padding the block implies. Without them
  the trees must find the rule from sparse off-grid rows (design notes:
  ``docs/design/device-rules.md``).

:func:`unit_work` is the size measure the predictor normalises latency by.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from ..profiler import OP_KINDS, BlockedLayoutRule, DeviceRules, NativeConvRule, UnitConfig
from ..profiler._units import OPTIONAL_FIELDS
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
    "log_macs_block",
    "blocked",
    "in_unpadded",
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
    "channels_last",
    "heads",
    "head_dim",
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
    for column, default in OPTIONAL_FIELDS.items():  # frames of version-1 tables
        if column not in frame:
            frame[column] = default
    op = frame["op"].to_numpy()
    v = {c: frame[c].to_numpy(dtype=np.int64) for c in (
        "batch", "in_channels", "out_channels", "in_h", "in_w", "out_h", "out_w", "kernel_h",
        "kernel_w", "groups", "n_inputs", "heads",
    )}  # fmt: skip
    bias = frame["bias"].to_numpy(dtype=bool)
    bn = frame["bn"].to_numpy(dtype=bool)
    broadcast = frame["broadcast"].to_numpy(dtype=bool)
    conv, linear = op == "conv", op == "linear"
    matmul, sdpa, embedding = op == "matmul", op == "sdpa", op == "embedding"
    groups = np.maximum(v["groups"], 1)
    heads = np.maximum(v["heads"], 1)
    n, cin, cout = v["batch"], v["in_channels"], v["out_channels"]
    out_elems = n * cout * v["out_h"] * v["out_w"]
    tokens = v["in_h"] * v["in_w"]
    kernel = v["kernel_h"] * v["kernel_w"]
    conv_macs = out_elems * (cin // groups) * kernel
    lin_macs = n * tokens * cin * cout
    matmul_macs = n * v["in_h"] * cin * cout // heads
    sdpa_macs = n * tokens * (cin + cout)
    frame["macs"] = np.select(
        [conv, linear, matmul, sdpa], [conv_macs, lin_macs, matmul_macs, sdpa_macs], 0
    )
    conv_params = cout * (cin // groups) * kernel + np.where(bias | bn, cout, 0)
    lin_params = cin * cout + np.where(bias, cout, 0)
    frame["params"] = np.select(
        [conv, linear, np.isin(op, ("bn", "layernorm")), op == "rmsnorm", embedding],
        [conv_params, lin_params, 2 * cin, cin, cin * cout],
        0,
    )
    first = n * cin * tokens
    extra_in = v["n_inputs"] - 1
    binary_other = n * cin * np.where(broadcast, 1, tokens)
    inputs = first + np.select(
        [conv & (extra_in > 0), np.isin(op, ("add", "mul"))],
        [extra_in * out_elems, extra_in * binary_other],
        0,
    )
    matmul_in = n * v["in_h"] * cin + n * cin * cout // heads
    sdpa_in = n * v["in_h"] * cin + n * v["in_w"] * (cin + cout)
    frame["input_elements"] = np.select(
        [matmul, sdpa, embedding], [matmul_in, sdpa_in, n * tokens], inputs
    )
    frame["output_elements"] = out_elems
    key = None
    for c in CONFIG_COLUMNS:
        values = frame[c].astype(str)
        part = "|" + c + "=" + values
        if c in OPTIONAL_FIELDS:  # named only when not the default (UnitConfig.key)
            part = part.where(values != str(OPTIONAL_FIELDS[c]), "")
        key = part if key is None else key + part
    frame["key"] = key.str[1:] if len(frame) else pd.Series(dtype=str)
    return frame


def _ceil(x: np.ndarray, multiple: int) -> np.ndarray:
    return np.ceil(x / multiple) * multiple


#: Generic alignment features; where a probed blocked-layout rule decides a conv's kernel,
#: they only let the trees split on residues that the rule already explains.
_ALIGNMENT_PROXIES = (
    "log_macs_ceil8", "in_mod8", "out_mod8", "in_mod16", "out_mod16", "in_align4", "out_align4",
)  # fmt: skip


def unit_features(frame: pd.DataFrame, rules: DeviceRules | None = None) -> np.ndarray:
    """Feature matrix (n_units, len(FEATURE_NAMES)) of a table-shaped frame; the blocked-
    layout features follow the device's probed ``rules`` (zero without a blocked rule)."""
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
    rule = rules.blocked if rules is not None else None
    blocked = blocked_layout_mask(frame, rule)
    if rule is not None and blocked.any():
        padded = np.where(blocked, np.log1p(block_macs(frame, rule)), f["log_macs"])
        unpadded_in = blocked & (_lookup(frame["in_channels"].to_numpy(), rule.padded_in) == cin)
    else:
        padded, unpadded_in = f["log_macs"], np.zeros(n, dtype=bool)
    f["log_macs_block"] = padded
    f["blocked"] = blocked.astype(float)
    f["in_unpadded"] = unpadded_in.astype(float)
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
    layout = frame["layout"] if "layout" in frame else pd.Series(["nchw"] * n)
    f["channels_last"] = (layout.astype(str).to_numpy() == "nhwc").astype(float)
    heads = frame["heads"].to_numpy(dtype=float) if "heads" in frame else np.ones(n)
    f["heads"] = heads
    attention = np.isin(op, ("matmul", "sdpa")) | (heads > 1)
    f["head_dim"] = np.where(attention, cin / np.maximum(heads, 1), 0.0)
    if rule is not None:  # the probed rule decides these convs' alignment: no proxy for it
        grouped = rule.grouped_multiple > 0  # probed: the rule decides grouped convs too
        decided = is_conv & ((groups == 1) | depthwise | grouped)
        for name in _ALIGNMENT_PROXIES:
            f[name] = np.where(decided, 0.0, f[name])
    return np.column_stack([f[name] for name in FEATURE_NAMES])


def unit_work(
    frame: pd.DataFrame,
    blocked: np.ndarray | None = None,
    rule: BlockedLayoutRule | None = None,
) -> np.ndarray:
    """Size of each unit's work: ``max(MACs, input elements + output elements) + 1``.

    Compute-bound units (conv, linear) scale with MACs, memory-bound ones (activations, adds,
    pooling) with the elements they read and write. ``blocked`` (a mask from
    :func:`blocked_layout_mask`) marks convs that run a blocked kernel under ``rule``: their
    MACs count with the channel padding of the block (:func:`block_macs`), since with a
    block of B a ``B->4`` conv computes a whole B-wide output block and costs what
    ``B->B`` does. Shape: ``(n_units,)``, unitless counts.
    """
    macs = frame["macs"].to_numpy(dtype=float)
    if blocked is not None and rule is not None and np.any(blocked):
        macs = np.where(blocked, block_macs(frame, rule), macs)
    elements = frame["input_elements"].to_numpy(dtype=float) + frame["output_elements"].to_numpy(
        dtype=float
    )
    return np.maximum(macs, elements) + 1.0


#: Units whose weights a whole model reads in full on every call (an embedding reads the
#: rows of its ids only).
_WEIGHT_READERS = ("conv", "linear", "bn", "layernorm", "rmsnorm")


def weight_bytes(frame: pd.DataFrame) -> np.ndarray:
    """Bytes of learned parameters each unit reads per call: ``params · itemsize(dtype)``
    for convs, linears and norms, 0 for other units. Shape ``(n_units,)``."""
    if not len(frame):
        return np.zeros(0)
    import torch

    sizes = {d: torch.empty(0, dtype=getattr(torch, d)).element_size()
             for d in frame["dtype"].unique()}  # fmt: skip
    itemsize = frame["dtype"].map(sizes).to_numpy(dtype=float)
    reads = frame["op"].isin(_WEIGHT_READERS).to_numpy()
    return np.where(reads, frame["params"].to_numpy(dtype=float) * itemsize, 0.0)


def blocked_layout_mask(frame: pd.DataFrame, rule: BlockedLayoutRule | None) -> np.ndarray:
    """True for convs that run a blocked-layout kernel under the device's probed ``rule``
    (:class:`~ttmpd.profiler.BlockedLayoutRule`; None: none do). Shape ``(n_units,)``.

    In a whole model, chains of such convs skip the layout conversions each isolated unit
    pays, so the calibration gives them their own slope.
    """
    n = len(frame)
    if rule is None or n == 0:
        return np.zeros(n, dtype=bool)
    conv = frame["op"].to_numpy() == "conv"
    c_in = frame["in_channels"].to_numpy(dtype=np.int64)
    c_out = frame["out_channels"].to_numpy(dtype=np.int64)
    groups = np.maximum(frame["groups"].to_numpy(dtype=np.int64), 1)
    depthwise = (groups > 1) & (groups == c_in)
    dense = groups == 1
    dense_ok = _lookup(c_in, rule.dense_is_blocked)
    depthwise_ok = _lookup(c_in, rule.depthwise_is_blocked)
    grouped_ok = rule.grouped_is_blocked(c_in, c_out, groups)
    return conv & np.where(depthwise, depthwise_ok, np.where(dense, dense_ok, grouped_ok))


def reorder_delta_ms(frame: pd.DataFrame, rule: BlockedLayoutRule | None) -> np.ndarray:
    """What each unit's layout reorders cost inside a whole model minus what they cost in
    its isolated measurement (ms), under the device's probed ``rule``. Shape
    ``(n_units,)``; zeros without a rule or a probed reorder cost.

    With ``r(e) = reorder_overhead_ms + reorder_ns_per_element·e·1e-6`` (one reorder of a
    tensor of ``e`` elements), a blocked conv measured alone reorders its input
    (if it reads the blocked layout, :meth:`~ttmpd.profiler.BlockedLayoutRule.reads_blocked`)
    and its output; inside a model its producers are assumed blocked, so only a conv that
    reads the plain layout needs its input reordered::

        blocked, reads blocked:   -r(in) - r(out)
        blocked, reads plain:     +r(in) - r(out)
        not blocked (plain):      +r(in)
        any other unit:            0

    One unit at a time, so savings stay additive per unit; the image conv's charge (it reads
    the plain model input) is the same for every prune of a model.
    """
    n = len(frame)
    if rule is None or n == 0 or not rule.prices_reorders:
        return np.zeros(n)
    blocked = blocked_layout_mask(frame, rule)
    reads = _reads_blocked_mask(frame, rule, blocked)
    conv = frame["op"].to_numpy() == "conv"

    def cost(column: str) -> np.ndarray:
        elements = frame[column].to_numpy(dtype=float)
        return rule.reorder_overhead_ms + rule.reorder_ns_per_element * elements * 1e-6

    r_in, r_out = cost("input_elements"), cost("output_elements")
    return np.where(conv, np.where(reads, -r_in, r_in) - np.where(blocked, r_out, 0.0), 0.0)


def _reads_blocked_mask(
    frame: pd.DataFrame, rule: BlockedLayoutRule, blocked: np.ndarray
) -> np.ndarray:
    """Blocked convs that read their input in the blocked layout: depthwise and grouped
    ones always, dense ones where :meth:`~ttmpd.profiler.BlockedLayoutRule.reads_blocked`."""
    c_in = frame["in_channels"].to_numpy(dtype=np.int64)
    groups = np.maximum(frame["groups"].to_numpy(dtype=np.int64), 1)
    return blocked & np.where(groups > 1, True, _lookup(c_in, rule.reads_blocked).astype(bool))


#: Unit kinds that run in the layout their inputs come in: blocked when every input is.
LAYOUT_PASSING = frozenset({"act", "add", "bn", "maxpool", "avgpool", "gap", "mul"})


def graph_reorder_delta_ms(
    frame: pd.DataFrame, inputs: Sequence[Sequence[int]], rule: BlockedLayoutRule | None
) -> np.ndarray:
    """:func:`reorder_delta_ms` with the model's graph: each unit's layout reorders inside
    the model minus what it paid alone (ms), from who produces and who reads each tensor.

    ``inputs[i]``: the rows producing unit ``i``'s tensor inputs, main input first (``-1``:
    the model input). ``frame`` holds one model's units or several models of that graph
    stacked (prunes of one model, ``len(inputs)`` rows each). Layouts: a blocked conv
    (:func:`blocked_layout_mask`) writes the blocked layout, reads it on its main input if
    it reads blocked (:meth:`~ttmpd.profiler.BlockedLayoutRule.reads_blocked`; depthwise
    and grouped convs always) and on a residual input; :data:`LAYOUT_PASSING` units write
    and read blocked when every input comes blocked, and so does a channel ``cat`` whose
    inputs also fill whole blocks (``c % block == 0`` each); every other unit, the model
    input and the model's outputs are plain. A tensor read in the layout its producer did
    not write is reordered once, ``r(e)`` for its ``e`` elements, charged to its producer
    (the model input's to its first reader). Alone, a blocked conv paid ``r(out)`` and, if
    it reads blocked, ``r(in)``. Shape ``(len(frame),)``; zeros without a rule or a probed
    reorder cost.
    """
    total, n = len(frame), len(inputs)
    if rule is None or total == 0 or not rule.prices_reorders:
        return np.zeros(total)
    if n == 0 or total % n:
        raise InputError(f"graph_reorder_delta_ms needs one input list per unit ({n} for {total})")
    shape = (total // n, n)
    op = frame["op"].to_numpy()[:n]  # the graph's kinds, the same in every model
    blocked = blocked_layout_mask(frame, rule)
    c_in = frame["in_channels"].to_numpy(dtype=np.int64)
    reads = _reads_blocked_mask(frame, rule, blocked)
    in_hw = frame["in_h"].to_numpy(dtype=float) * frame["in_w"].to_numpy(dtype=float)
    main_in = frame["batch"].to_numpy(dtype=float) * c_in * in_hw
    out = frame["output_elements"].to_numpy(dtype=float).reshape(shape)
    c_out = frame["out_channels"].to_numpy(dtype=np.int64).reshape(shape)
    blocked, reads, main_in = (a.reshape(shape) for a in (blocked, reads, main_in))

    def r(elements: np.ndarray) -> np.ndarray:
        return rule.reorder_overhead_ms + rule.reorder_ns_per_element * elements * 1e-6

    writes = np.zeros(shape, dtype=bool)
    wants_blocked, wants_plain = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    input_blocked = np.zeros(shape[0], dtype=bool)
    read = np.zeros(n, dtype=bool)
    for i, sources in enumerate(inputs):
        sources = list(sources)
        if op[i] == "conv":
            writes[:, i] = blocked[:, i]
            wants = [reads[:, i]] + [blocked[:, i]] * (len(sources) - 1)
        elif op[i] in LAYOUT_PASSING or op[i] == "cat":
            fed = np.ones(shape[0], dtype=bool) if sources else np.zeros(shape[0], dtype=bool)
            for p in sources:
                fed &= writes[:, p] if p >= 0 else False
                if op[i] == "cat" and p >= 0:  # blocked only where every piece fills blocks
                    fed &= c_out[:, p] % rule.block == 0
            writes[:, i] = fed
            wants = [fed] * len(sources)
        else:
            wants = [np.zeros(shape[0], dtype=bool)] * len(sources)
        for p, want in zip(sources, wants, strict=True):
            if p < 0:
                input_blocked |= want
                continue
            read[p] = True
            wants_blocked[:, p] |= want
            wants_plain[:, p] |= ~want
    wants_plain[:, ~read] = True  # the model's outputs
    reordered = (writes & wants_plain) | (~writes & wants_blocked)
    delta = np.where(reordered, r(out), 0.0)
    delta -= np.where(blocked, r(out) + np.where(reads, r(main_in), 0.0), 0.0)
    first = next((i for i, sources in enumerate(inputs) if -1 in sources), None)
    if first is not None:
        delta[:, first] += np.where(input_blocked, r(main_in[:, first]), 0.0)
    return delta.reshape(-1)


def block_macs(frame: pd.DataFrame, rule: BlockedLayoutRule) -> np.ndarray:
    """Conv MACs as a blocked kernel computes them under ``rule``, padding included:
    ``c_out`` rounded up to the block; a dense conv's ``c_in`` to what the probe read from
    the stored weight (:meth:`~ttmpd.profiler.BlockedLayoutRule.padded_in`); a depthwise
    conv's channels to the block. Shape ``(n_units,)``; only meaningful for convs."""
    num = {c: frame[c].to_numpy(dtype=np.int64) for c in (
        "batch", "in_channels", "out_channels", "out_h", "out_w", "kernel_h", "kernel_w",
        "groups",
    )}  # fmt: skip
    cin, groups = num["in_channels"], np.maximum(num["groups"], 1)
    depthwise = (groups > 1) & (groups == cin)
    padded_in = _lookup(cin, rule.padded_in).astype(float)
    in_block = np.where(depthwise, 1.0, padded_in / groups)
    out = _lookup(num["out_channels"], rule.padded_out).astype(float)
    return (
        num["batch"] * out * num["out_h"] * num["out_w"] * in_block * num["kernel_h"]
        * num["kernel_w"]
    ).astype(float)  # fmt: skip


def native_conv_mask(
    frame: pd.DataFrame, rule: NativeConvRule | None, threads: int = 1
) -> np.ndarray:
    """True for convs eager PyTorch runs on its native path under the device's probed
    ``rule`` (:class:`~ttmpd.profiler.NativeConvRule`; None: none do). Shape ``(n_units,)``.

    Inside whole models native convs run slower than their isolated time relative to
    library (oneDNN) convs, so the calibration gives them their own slope.
    """
    n = len(frame)
    if rule is None or n == 0:
        return np.zeros(n, dtype=bool)
    num = {c: frame[c].to_numpy(dtype=np.int64) for c in (
        "batch", "in_channels", "in_h", "in_w", "kernel_h", "kernel_w", "stride_h",
        "stride_w", "dilation_h", "dilation_w", "groups",
    )}  # fmt: skip
    conv = frame["op"].to_numpy() == "conv"
    inputs = num["batch"] * num["in_channels"] * num["in_h"] * num["in_w"]
    native = (
        ((num["groups"] == 1) | rule.grouped)
        & (np.minimum(num["kernel_h"], num["kernel_w"]) <= rule.max_kernel)
        & (num["batch"] <= rule.max_batch)
        & (inputs <= rule.max_input_elements)
    )
    pointwise = (
        (num["kernel_h"] == 1) & (num["kernel_w"] == 1) & (num["stride_h"] == 1)
        & (num["stride_w"] == 1) & (num["dilation_h"] == 1) & (num["dilation_w"] == 1)
        & (num["groups"] == 1)
    )  # fmt: skip
    pointwise_native = (
        pointwise & (num["batch"] <= rule.pointwise_max_batch)
        & (threads <= rule.pointwise_max_threads)
    )  # fmt: skip
    return conv & (native | pointwise_native)


def _lookup(values: np.ndarray, fn) -> np.ndarray:
    """``fn`` applied per distinct value of an integer array (rules are scalar functions)."""
    if len(values) == 0:
        return np.zeros(0)
    distinct, inverse = np.unique(values, return_inverse=True)
    return np.asarray([fn(int(v)) for v in distinct])[inverse]
