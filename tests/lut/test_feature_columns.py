"""Every feature column and derived count against a per-unit computation written here from
the definitions (``UnitConfig``'s scalar properties and the ``_features`` docstring), on units
of every op kind, with and without a blocked-layout rule; the device masks on hand-made
rules."""

from __future__ import annotations

import math

import pytest

from ttmpd.lut._features import (
    FEATURE_NAMES,
    block_macs,
    blocked_layout_mask,
    configs_frame,
    native_conv_mask,
    unit_features,
    unit_work,
    with_derived_columns,
)
from ttmpd.profiler import BlockedLayoutRule, DeviceRules, NativeConvRule, UnitConfig

CONV = UnitConfig(
    op="conv",
    batch=2,
    in_channels=12,
    out_channels=20,
    in_h=9,
    in_w=7,
    out_h=5,
    out_w=4,
    kernel_h=3,
    kernel_w=2,
    stride_h=2,
    stride_w=2,
    pad_h=1,
    pad_w=1,
)
UNITS = [
    CONV,
    CONV.replace(bias=True, act="relu"),
    CONV.replace(bn=True, n_inputs=2),  # a residual conv: BN folded, reads the shortcut
    CONV.replace(in_channels=12, out_channels=12, groups=12),  # depthwise
    CONV.replace(in_channels=12, out_channels=18, groups=3),  # grouped
    CONV.replace(in_channels=3, out_channels=8, kernel_h=1, kernel_w=1),
    CONV.replace(in_channels=36, out_channels=44, layout="nhwc"),
    CONV.replace(in_channels=16, out_channels=4),  # blocked, reads its input unpadded
    CONV.replace(in_channels=1, out_channels=8),  # one input channel: dense, not depthwise
    CONV.replace(in_channels=2, out_channels=2, groups=2),  # the narrowest depthwise conv
    UnitConfig(op="linear", batch=3, in_channels=10, out_channels=7, in_h=5, in_w=1, out_h=5),
    UnitConfig(op="linear", batch=1, in_channels=9, out_channels=17, bias=True),
    UnitConfig(op="linear", batch=1, in_channels=8, out_channels=24, in_h=5, out_h=5, heads=2),
    UnitConfig(
        op="matmul",
        batch=2,
        in_channels=16,
        out_channels=8,
        in_h=6,
        in_w=6,
        out_h=6,
        out_w=6,
        heads=4,
    ),
    UnitConfig(op="sdpa", batch=1, in_channels=8, out_channels=8, in_h=5, in_w=7, out_h=5, heads=2),
    UnitConfig(op="embedding", batch=2, in_channels=50, out_channels=12, in_h=6, out_h=6),
    UnitConfig(op="bn", batch=1, in_channels=6, out_channels=6, in_h=4, in_w=4, out_h=4, out_w=4),
    UnitConfig(
        op="layernorm", batch=1, in_channels=24, out_channels=24, in_h=3, out_h=3, layout="nhwc"
    ),
    UnitConfig(op="rmsnorm", batch=1, in_channels=24, out_channels=24, in_h=3, out_h=3),
    UnitConfig(
        op="add",
        batch=2,
        in_channels=5,
        out_channels=5,
        in_h=3,
        in_w=3,
        out_h=3,
        out_w=3,
        n_inputs=3,
    ),
    UnitConfig(
        op="mul",
        batch=2,
        in_channels=5,
        out_channels=5,
        in_h=3,
        in_w=3,
        out_h=3,
        out_w=3,
        n_inputs=2,
        broadcast=True,
    ),
    UnitConfig(
        op="act",
        batch=1,
        in_channels=7,
        out_channels=7,
        in_h=2,
        in_w=2,
        out_h=2,
        out_w=2,
        act="gelu",
    ),
    UnitConfig(
        op="maxpool",
        batch=1,
        in_channels=4,
        out_channels=4,
        in_h=8,
        in_w=8,
        out_h=4,
        out_w=4,
        kernel_h=2,
        kernel_w=2,
        stride_h=2,
        stride_w=2,
    ),
    UnitConfig(op="gap", batch=1, in_channels=33, out_channels=33, in_h=6, in_w=6),
]
LINEAR = next(u for u in UNITS if u.op == "linear")

#: block 8; dense convs up to 16 input channels probed (blocked at 8, 12 and 16, the 12 read
#: as 16); above that blocked at multiples of 4, padded to 8
RULE = BlockedLayoutRule(
    block=8,
    in_block=8,
    probed_max=16,
    dense_blocked=(8, 12, 16),
    dense_padded_in=(*range(1, 12), 16, 13, 14, 15, 16),
    depthwise_blocked=(12,),
    in_multiple=4,
    depthwise_multiple=8,
)


def _ceil(x: float, m: int) -> int:
    return math.ceil(x / m) * m


def _is_blocked(u: UnitConfig) -> bool:
    if u.op != "conv":
        return False
    if u.is_depthwise:
        c = u.in_channels
        return c in RULE.depthwise_blocked if c <= 16 else c % RULE.depthwise_multiple == 0
    if u.groups != 1:
        return False
    c = u.in_channels
    return c in RULE.dense_blocked if c <= 16 else c % RULE.in_multiple == 0


def _padded_in(c: int) -> int:
    return RULE.dense_padded_in[c - 1] if c <= 16 else _ceil(c, 8)


def _block_macs(u: UnitConfig) -> int:
    per_out = 1 if u.is_depthwise else _padded_in(u.in_channels) / u.groups
    return (
        u.batch * _ceil(u.out_channels, 8) * u.out_h * u.out_w * per_out * u.kernel_h * u.kernel_w
    )


def reference_features(u: UnitConfig, rule: bool) -> list[float]:
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    f[f"op_{u.op}"] = 1.0
    f["bn"], f["has_act"] = float(u.bn), float(u.act != "")
    f["residual"] = float(u.op == "conv" and u.n_inputs > 1)
    f["depthwise"] = float(u.is_depthwise)
    f["log_macs"], f["log_params"] = math.log1p(u.macs), math.log1p(u.params)
    f["log_in_elems"] = math.log1p(u.input_elements)
    f["log_out_elems"] = math.log1p(u.output_elements)
    if u.op in ("conv", "linear"):
        per_group = 1 if u.is_depthwise else _ceil(u.in_channels / u.groups, 8)
        spatial = u.out_h * u.out_w * u.kernel_h * u.kernel_w
        f["log_macs_ceil8"] = math.log1p(u.batch * _ceil(u.out_channels, 8) * spatial * per_group)
    blocked = rule and _is_blocked(u)
    f["log_macs_block"] = math.log1p(_block_macs(u)) if blocked else f["log_macs"]
    f["blocked"] = float(blocked)
    f["in_unpadded"] = float(blocked and _padded_in(u.in_channels) == u.in_channels)
    f["batch"], f["in_channels"], f["out_channels"] = u.batch, u.in_channels, u.out_channels
    f["in_hw"], f["out_hw"] = u.in_h * u.in_w, u.out_h * u.out_w
    f["kernel"], f["stride"], f["groups"] = u.kernel_h * u.kernel_w, u.stride_h, u.groups
    f["in_mod8"], f["out_mod8"] = u.in_channels % 8, u.out_channels % 8
    f["in_mod16"], f["out_mod16"] = u.in_channels % 16, u.out_channels % 16
    f["in_align4"] = float(u.in_channels % 4 == 0)
    f["out_align4"] = float(u.out_channels % 4 == 0)
    f["n_inputs"], f["broadcast"] = u.n_inputs, float(u.broadcast)
    f["channels_last"], f["heads"] = float(u.layout == "nhwc"), u.heads
    attention = u.op in ("matmul", "sdpa") or u.heads > 1
    f["head_dim"] = u.in_channels / u.heads if attention else 0.0
    if rule and u.op == "conv" and (u.groups == 1 or u.is_depthwise):
        for name in ("log_macs_ceil8", "in_mod8", "out_mod8", "in_mod16", "out_mod16"):
            f[name] = 0.0
        f["in_align4"] = f["out_align4"] = 0.0
    return [f[name] for name in FEATURE_NAMES]


def test_derived_columns_and_keys_match_the_unit_properties():
    frame = configs_frame(UNITS)
    for column in ("macs", "params", "input_elements", "output_elements"):
        assert frame[column].tolist() == [getattr(u, column) for u in UNITS], column
    assert frame["key"].tolist() == [u.key for u in UNITS]


def test_derived_columns_fill_fields_older_tables_lack():
    old = configs_frame(UNITS[:3]).drop(columns=["layout", "heads", "macs", "key"])
    frame = with_derived_columns(old)
    assert frame["key"].tolist() == [u.key for u in UNITS[:3]]
    assert frame["macs"].tolist() == [u.macs for u in UNITS[:3]]
    assert with_derived_columns(configs_frame([]))["key"].tolist() == []


@pytest.mark.parametrize("with_rule", [False, True])
def test_every_feature_column_matches_its_definition(with_rule):
    rules = DeviceRules(blocked=RULE) if with_rule else None
    got = unit_features(configs_frame(UNITS), rules)
    assert got.shape == (len(UNITS), len(FEATURE_NAMES))
    for row, unit in zip(got, UNITS, strict=True):
        expected = reference_features(unit, with_rule)
        for name, g, e in zip(FEATURE_NAMES, row, expected, strict=True):
            assert g == pytest.approx(e, rel=1e-12), f"{unit.op}: {name}"


def test_a_rule_that_blocks_nothing_leaves_the_padding_features_plain():
    rules = DeviceRules(blocked=RULE)
    frame = configs_frame([CONV.replace(in_channels=10), LINEAR])  # neither runs blocked
    f = unit_features(frame, rules)
    block, macs = FEATURE_NAMES.index("log_macs_block"), FEATURE_NAMES.index("log_macs")
    assert f[:, block].tolist() == f[:, macs].tolist()
    assert f[:, FEATURE_NAMES.index("in_unpadded")].tolist() == [0.0, 0.0]


def test_blocked_mask_and_block_macs_follow_the_rule():
    units = [u for u in UNITS if u.op == "conv"] + [CONV.replace(in_channels=16, out_channels=4)]
    frame = configs_frame(units)
    assert blocked_layout_mask(frame, RULE).tolist() == [_is_blocked(u) for u in units]
    assert block_macs(frame, RULE).tolist() == [_block_macs(u) for u in units]
    assert blocked_layout_mask(frame, None).tolist() == [False] * len(units)
    assert blocked_layout_mask(configs_frame([]), RULE).tolist() == []


def test_unit_work_is_the_larger_of_macs_and_elements_plus_one():
    frame = configs_frame(UNITS)
    expected = [max(u.macs, u.input_elements + u.output_elements) + 1 for u in UNITS]
    assert unit_work(frame).tolist() == expected
    mask = blocked_layout_mask(frame, RULE)
    padded = [
        max(_block_macs(u) if b else u.macs, u.input_elements + u.output_elements) + 1
        for u, b in zip(UNITS, mask, strict=True)
    ]
    assert mask.any() and unit_work(frame, mask, RULE).tolist() == padded
    assert unit_work(frame, mask, None).tolist() == expected


NATIVE = NativeConvRule(
    max_input_elements=1000,
    max_kernel=3,
    max_batch=2,
    pointwise_max_batch=1,
    pointwise_max_threads=2,
)


def _native(u: UnitConfig, rule: NativeConvRule, threads: int) -> bool:
    inputs = u.batch * u.in_channels * u.in_h * u.in_w
    general = (
        (u.groups == 1 or rule.grouped)
        and min(u.kernel_h, u.kernel_w) <= rule.max_kernel
        and u.batch <= rule.max_batch
        and inputs <= rule.max_input_elements
    )
    one_by_one = (u.kernel_h, u.kernel_w, u.stride_h, u.stride_w) == (1, 1, 1, 1)
    pointwise = one_by_one and (u.dilation_h, u.dilation_w, u.groups) == (1, 1, 1)
    by_pointwise = pointwise and u.batch <= rule.pointwise_max_batch
    return u.op == "conv" and (general or (by_pointwise and threads <= rule.pointwise_max_threads))


NATIVE_CASES = [
    CONV,  # 2 * 12 * 63 = 1512 inputs: too large
    CONV.replace(in_h=5, in_w=5),  # 600 inputs: native
    CONV.replace(in_h=5, in_w=5, batch=3),  # batch above the limit
    CONV.replace(in_h=5, in_w=5, kernel_h=5, kernel_w=4),  # smaller side 4 > 3
    CONV.replace(in_h=5, in_w=5, kernel_h=5, kernel_w=3),  # smaller side 3: native
    CONV.replace(in_h=5, in_w=5, groups=3, out_channels=18),  # grouped
    CONV.replace(batch=1, kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, in_h=40, in_w=40),
    CONV.replace(batch=1, kernel_h=1, kernel_w=1, stride_h=1, stride_w=2, in_h=40, in_w=40),
    CONV.replace(
        batch=1, kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, in_h=40, in_w=40, dilation_w=2
    ),
    CONV.replace(batch=2, kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, in_h=40, in_w=40),
    LINEAR,  # not a conv
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("grouped", [False, True])
def test_native_mask_follows_the_rule(threads, grouped):
    rule = NativeConvRule(**{**NATIVE.__dict__, "grouped": grouped})
    mask = native_conv_mask(configs_frame(NATIVE_CASES), rule, threads=threads)
    assert mask.tolist() == [_native(u, rule, threads) for u in NATIVE_CASES]


def test_native_mask_cases_cover_both_answers():
    # the hand-made cases exercise each clause: some native, some not, per clause
    expected = [False, True, False, False, True, False, True, False, False, False, False]
    assert [_native(u, NATIVE, 1) for u in NATIVE_CASES] == expected
    assert native_conv_mask(configs_frame(NATIVE_CASES), None).tolist() == [False] * 11
    assert native_conv_mask(configs_frame([]), NATIVE).tolist() == []
