import itertools

import pytest
from nets import DepthwiseNet, ResidualNet

from ttmpd.errors import InputError
from ttmpd.profiler import (
    DeviceRules,
    GridConfig,
    UnitConfig,
    extract_units,
    grid_configs,
    infer_blocked_rule,
    unit_variants,
)
from ttmpd.profiler._grid import stair_widths
from ttmpd.profiler.backends.fake import fake_conv_layout


def test_channel_options_step_and_fractions():
    assert GridConfig(channel_step=8).channel_options(20) == [20, 16, 8]
    assert GridConfig(channel_step=8).channel_options(16) == [16, 8]
    fr = GridConfig(channel_step=None, keep_fractions=(0.25, 0.5, 1.0))
    assert fr.channel_options(10) == [10, 5, 2]
    assert GridConfig(channel_step=4).channel_options(12, multiple_of=3) == [12]


def test_fixed_dims_are_not_varied(example_input):
    units = extract_units(ResidualNet().eval(), example_input).units
    stem = unit_variants(units[0], GridConfig(channel_step=4, off_grid_per_unit=0))
    assert {v.in_channels for v in stem} == {3}
    assert {v.out_channels for v in stem} == {16, 12, 8, 4}
    fc = unit_variants(units[-1], GridConfig(channel_step=4, off_grid_per_unit=0))
    assert {v.out_channels for v in fc} == {10}
    assert {v.in_channels for v in fc} == {16, 12, 8, 4}
    conv1 = unit_variants(units[3], GridConfig(channel_step=4, off_grid_per_unit=0))
    assert len(conv1) == 16 and conv1[0] == units[3].config


def test_depthwise_variants_stay_depthwise(example_input):
    units = extract_units(DepthwiseNet().eval(), example_input).units
    dw = next(u for u in units if u.config.is_depthwise)
    variants = unit_variants(dw, GridConfig(channel_step=8, off_grid_per_unit=0))
    assert [v.in_channels for v in variants] == [32, 24, 16, 8]
    assert all(v.is_depthwise for v in variants)


def test_grid_is_deduplicated_and_capped(example_input):
    units = extract_units(ResidualNet(c=64).eval(), example_input).units
    full = grid_configs(units, GridConfig(channel_step=8, max_variants_per_unit=10_000))
    assert len({c.key for c in full}) == len(full)
    capped = grid_configs(units, GridConfig(channel_step=8, max_variants_per_unit=12))
    again = grid_configs(units, GridConfig(channel_step=8, max_variants_per_unit=12))
    assert [c.key for c in capped] == [c.key for c in again]  # deterministic
    assert len(capped) < len(full)
    conv1 = unit_variants(units[3], GridConfig(channel_step=8, max_variants_per_unit=12))
    assert 12 <= len(conv1) <= 12 + 8
    diagonal = {(c, c) for c in range(8, 65, 8)}
    assert diagonal <= {(v.in_channels, v.out_channels) for v in conv1}


def test_off_grid_counts_cover_every_residue_mod_8(example_input):
    units = extract_units(ResidualNet(c=64).eval(), example_input).units
    conv = next(u for u in units if not (u.fixed_in or u.fixed_out))
    grid = GridConfig(channel_step=8, max_variants_per_unit=1, off_grid_per_unit=7)
    pairs = {(v.in_channels, v.out_channels) for v in unit_variants(conv, grid)}
    off = {(i, o) for i, o in pairs if i % 8 or o % 8}
    assert len(off) == 7
    assert {i % 8 for i, _ in off} == set(range(1, 8)) == {o % 8 for _, o in off}
    assert all(1 <= i <= 64 and 1 <= o <= 64 for i, o in off)
    # one count per eighth of [1, 64]: light prunes (57-63) sampled too, not only by luck
    eight = GridConfig(channel_step=8, max_variants_per_unit=1, off_grid_per_unit=8)
    off8 = [(v.in_channels, v.out_channels) for v in unit_variants(conv, eight)[1:]]
    off8 = [(i, o) for i, o in off8 if i % 8 or o % 8]
    assert sorted((i - 1) // 8 for i, _ in off8) == list(range(8))
    assert sorted((o - 1) // 8 for _, o in off8) == list(range(8))
    dw = next(u for u in extract_units(DepthwiseNet().eval(), example_input).units
              if u.config.is_depthwise)  # fmt: skip
    variants = unit_variants(dw, GridConfig(channel_step=8, off_grid_per_unit=7))
    assert all(v.is_depthwise for v in variants)
    assert {v.in_channels % 8 for v in variants} == set(range(8))


def test_sparse_grid_keeps_a_spread_share_of_each_unit(example_input):
    units = extract_units(ResidualNet(c=64).eval(), example_input).units
    conv = next(u for u in units if u.config.op == "conv" and not (u.fixed_in or u.fixed_out))
    dense = GridConfig(channel_step=8, max_variants_per_unit=10_000, off_grid_per_unit=8)
    sparse = GridConfig(channel_step=8, max_variants_per_unit=10_000, off_grid_per_unit=8,
                        sample_fraction=0.25)  # fmt: skip
    full, thin = unit_variants(conv, dense), unit_variants(conv, sparse)
    assert thin[0] == full[0] == conv.config  # the unpruned configuration always
    assert {v.key for v in thin} <= {v.key for v in full}
    assert len(thin) == 1 + 16 + 2  # a quarter of 8 x 8 grid pairs and of 8 off-grid counts
    ins = sorted({v.in_channels for v in thin[1:] if v.in_channels % 8 == 0})
    assert ins[0] <= 16 and ins[-1] >= 56  # the sample spans the range of counts
    assert [v.key for v in unit_variants(conv, sparse)] == [v.key for v in thin]
    whole = grid_configs(units, sparse)
    assert len(whole) < 0.4 * len(grid_configs(units, dense))
    assert {u.config.key for u in units} <= {c.key for c in whole}


def test_bad_grid_configs():
    with pytest.raises(InputError, match="sample fraction"):
        GridConfig(sample_fraction=0.0)
    with pytest.raises(InputError, match="at most one"):
        GridConfig(channel_step=8, keep_fractions=(0.5,))
    with pytest.raises(InputError, match="keep fractions"):
        GridConfig(channel_step=None, keep_fractions=(1.5,))


# ----- the staircase grid --------------------------------------------------------------------
def _rules(block: int) -> DeviceRules:
    """The rules a device with this blocked-layout width reports (the fake device's form)."""
    observe = lambda specs: [fake_conv_layout(i, o, g, block) for i, o, g in specs]  # noqa: E731
    return DeviceRules(blocked=infer_blocked_rule(observe))


def _conv(c_in: int, c_out: int, groups: int = 1) -> UnitConfig:
    return UnitConfig("conv", 1, c_in, c_out, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, groups=groups)


def test_staircase_keeps_the_top_count_of_each_step_of_the_device_block():
    grid = GridConfig()
    assert grid.kind == "staircase" and GridConfig(channel_step=8).kind == "step"
    for block, outs in [(16, [64, 48, 32, 16]), (8, [64, 56, 48, 40, 32, 24, 16, 8])]:
        work_in, work_out = stair_widths(_conv(64, 64), _rules(block))
        assert grid.channel_options(64, work=work_out) == outs
        ins = grid.channel_options(64, work=work_in)
        assert ins == sorted({*outs, 8}, reverse=True)  # c_in < block runs unpadded
        # independent check: no larger multiple of 8 computes at a kept count's width
        for c in ins:
            assert all(work_in(d) != work_in(c) for d in range(c + 8, 65, 8))


def test_staircase_thins_wide_dimensions_by_relative_gap():
    grid = GridConfig()
    wide = grid.channel_options(512)
    assert grid.channel_options(64) == list(range(64, 0, -8))  # narrow: every step
    assert wide[0] == 512 and wide[-1] == 8 and len(wide) < 64 / 2
    for a, b in itertools.pairwise(wide):
        assert b <= 0.875 * a  # at least the gap below the last kept count
        skipped = range(b + 8, a, 8)
        assert not any(c <= 0.875 * a for c in skipped)  # and the largest such count
    assert len(GridConfig(min_rel_gap=0.25).channel_options(512)) < len(wide)


def test_a_flat_dimension_keeps_two_counts():
    _, work_out = stair_widths(_conv(16, 16), _rules(16))
    assert GridConfig().channel_options(16, work=work_out) == [16, 8]
    assert GridConfig().channel_options(8, work=work_out) == [8]


def test_stairs_follow_the_rule_only_where_it_applies():
    rules = _rules(16)
    for unit in (_conv(32, 32, groups=4), UnitConfig("bn", 1, 32, 32, 4, 4, 4, 4)):
        work_in, work_out = stair_widths(unit, rules)
        assert [work_in(c) for c in (8, 24)] == [8, 24] == [work_out(c) for c in (8, 24)]
    work_in, work_out = stair_widths(_conv(32, 32, groups=32), rules)
    assert work_in(24) == work_out(24) == 32  # depthwise: padded when blocked
    assert stair_widths(_conv(32, 32), None)[1](24) == 24


def test_staircase_grid_is_a_smaller_subset_of_the_step_grid(example_input):
    units = extract_units(ResidualNet(c=64).eval(), example_input).units
    uncapped = {"max_variants_per_unit": 10_000, "off_grid_per_unit": 0}
    step = {c.key for c in grid_configs(units, GridConfig(channel_step=8, **uncapped))}
    for rules in (None, _rules(16)):
        stairs = grid_configs(units, GridConfig(**uncapped), rules)
        assert {c.key for c in stairs} <= step
        assert [c.key for c in grid_configs(units, GridConfig(**uncapped), rules)] == [
            c.key for c in stairs
        ]
    conv = next(u for u in units if u.config.op == "conv" and not (u.fixed_in or u.fixed_out))
    pairs = {
        (v.in_channels, v.out_channels)
        for v in unit_variants(conv, GridConfig(off_grid_per_unit=0), _rules(16))
    }
    assert pairs == set(itertools.product([64, 48, 32, 16, 8], [64, 48, 32, 16]))  # not 8 x 8
    assert {u.config.key for u in units} <= {c.key for c in grid_configs(units, GridConfig())}
