"""DeviceRules: the probed unit layouts survive (de)serialisation; older dicts still load."""

import json

import pytest

from ttmpd.errors import InputError
from ttmpd.profiler import DeviceRules, NativeConvRule
from ttmpd.profiler._rules import RULES_VERSION

LAYOUTS = (("linear", "ab"), ("conv", "acdb"), ("act", "abcd"))


def _through_json(rules: DeviceRules) -> DeviceRules:
    """As a table stores them: a dict in JSON metadata."""
    return DeviceRules.from_dict(json.loads(json.dumps(rules.to_dict())))


@pytest.mark.parametrize("layouts", [(), LAYOUTS], ids=["without", "with"])
def test_round_trip_keeps_unit_layouts(layouts):
    rules = DeviceRules(
        native=NativeConvRule(20480, 3, 1, 8, 1),
        probe_seconds=0.5,
        notes=("a note",),
        unit_layouts=layouts,
    )
    back = _through_json(rules)
    assert back == rules
    assert dict(back.unit_layouts) == dict(layouts)
    assert back.native == rules.native and back.notes == ("a note",)


def test_unit_layouts_are_sorted_by_kind():
    rules = DeviceRules(unit_layouts=LAYOUTS)
    assert rules.unit_layouts == (("act", "abcd"), ("conv", "acdb"), ("linear", "ab"))
    assert rules == DeviceRules(unit_layouts=tuple(reversed(LAYOUTS)))


def test_a_dict_without_unit_layouts_still_loads():
    """Tables written before the field: same version, no ``unit_layouts`` key."""
    old = DeviceRules(native=NativeConvRule(20480, 3, 1, 8, 1)).to_dict()
    del old["unit_layouts"]
    assert old["version"] == RULES_VERSION
    rules = DeviceRules.from_dict(old)
    assert rules.unit_layouts == ()
    assert rules.native == NativeConvRule(20480, 3, 1, 8, 1)
    assert rules.second_slope == "native"


def test_describe_names_each_layout():
    assert "unit layouts" not in DeviceRules().describe()
    text = DeviceRules(unit_layouts=LAYOUTS).describe()
    assert text == "unit layouts in a whole model: act abcd, conv acdb, linear ab"
    assert DeviceRules(unit_layouts=LAYOUTS).second_slope == ""  # layouts add no conv slope


def test_a_kind_given_twice_is_refused():
    with pytest.raises(InputError, match="conv"):
        DeviceRules(unit_layouts=(("conv", "acdb"), ("conv", "abcd")))


def test_a_rule_without_reorder_fields_still_loads_and_prices_none():
    """Tables written before the reorder probe: the blocked rule's dict lacks both fields."""
    from ttmpd.profiler import BlockedLayoutRule

    rule = BlockedLayoutRule(16, 16, 2, (1, 2), (1, 2), (1, 2), 4, 4, 0.0004, 0.15)
    d = DeviceRules(blocked=rule).to_dict()
    assert _through_json(DeviceRules(blocked=rule)).blocked == rule
    assert "layout reorder: 0.40 µs + 0.150 ns per element" in DeviceRules(blocked=rule).describe()
    for key in ("reorder_overhead_ms", "reorder_ns_per_element"):
        del d["blocked"][key]
    old = DeviceRules.from_dict(d).blocked
    assert not old.prices_reorders and "reorder" not in DeviceRules(blocked=old).describe()


def test_reorder_cost_is_a_non_negative_line_through_the_samples():
    from ttmpd.profiler._rules import fit_reorder_cost

    line = [(e, 0.0003 + 0.2e-6 * e) for e in (4096, 16384, 65536)]
    assert fit_reorder_cost(line) == pytest.approx((0.0003, 0.2))
    # a noisy probe whose big tensor came out cheaper: no negative cost per element
    overhead, ns = fit_reorder_cost([(4096, 0.002), (65536, 0.001)])
    assert ns == 0.0 and overhead > 0
    with pytest.raises(InputError, match="two or more"):
        fit_reorder_cost([(4096, 0.001), (4096, 0.0011)])


@pytest.mark.parametrize(("block", "grouped"), [(8, 8), (16, 16), (16, 4), (8, 0)])
def test_the_grouped_rule_follows_what_the_device_blocks(block, grouped):
    """A device whose grouped convs run blocked at per-group multiples of ``grouped`` (0:
    never): the probe finds that multiple and the rule predicts held-out grouped convs."""
    from ttmpd.profiler import ConvLayout, infer_blocked_rule
    from ttmpd.profiler.backends.fake import fake_conv_layout

    def device(c_in: int, c_out: int, groups: int) -> ConvLayout:
        if groups == 1 or groups == c_in:
            return fake_conv_layout(c_in, c_out, groups, block)
        per_in, per_out = c_in // groups, c_out // groups
        runs = grouped > 0 and per_in % grouped == 0 and per_out % grouped == 0
        return ConvLayout(runs, c_in, c_out)

    rule = infer_blocked_rule(lambda specs: [device(*s) for s in specs])
    assert rule.grouped_multiple == grouped
    held_out = [(64, 64, 4), (96, 96, 3), (32, 48, 2), (48, 32, 2), (40, 40, 5), (24, 24, 3)]
    assert [bool(rule.grouped_is_blocked(*c)) for c in held_out] == [
        device(*c).blocked for c in held_out
    ]
    assert ("grouped never" in DeviceRules(blocked=rule).describe()) == (grouped == 0)
    assert _through_json(DeviceRules(blocked=rule)).blocked == rule


def test_a_rule_from_before_the_grouped_probe_loads_as_never_grouped():
    from ttmpd.profiler import BlockedLayoutRule

    rule = BlockedLayoutRule(16, 16, 2, (1, 2), (1, 2), (1, 2), 4, 4, grouped_multiple=16)
    d = DeviceRules(blocked=rule).to_dict()
    del d["blocked"]["grouped_multiple"]
    old = DeviceRules.from_dict(d).blocked
    assert old.grouped_multiple == 0 and not old.grouped_is_blocked(32, 32, 2)
    with pytest.raises(InputError, match="grouped_multiple"):
        BlockedLayoutRule(16, 16, 2, (1, 2), (1, 2), (1, 2), 4, 4, grouped_multiple=-1)


def test_an_isolation_cost_is_kept_with_the_rules_and_priced_per_variant():
    from ttmpd.profiler import IsolationCost
    from ttmpd.profiler._rules import unit_variant

    cost = IsolationCost("conv+residual", 0.004, 0.5)
    rules = DeviceRules(isolation=(cost,))
    assert DeviceRules.from_dict(rules.to_dict()) == rules
    assert "conv+residual pays 4.00 µs + 0.500 ns per output element" in rules.describe()
    old = rules.to_dict()
    del old["isolation"]  # a table written before the probe
    assert DeviceRules.from_dict(old).isolation == ()
    assert unit_variant("conv", 2) == "conv+residual" and unit_variant("conv", 1) == "conv"
    assert unit_variant("add", 2) == "add"
    ms = rules.isolation_ms(["conv", "conv", "add"], [2, 1, 2], [2000, 2000, 2000])
    assert ms == pytest.approx([0.004 + 0.5e-6 * 2000, 0.0, 0.0])
    with pytest.raises(InputError, match="non-negative"):
        IsolationCost("conv+residual", -0.001, 0.5)
    with pytest.raises(InputError, match="twice"):
        DeviceRules(isolation=(cost, cost))


def test_the_fake_device_probe_measures_what_a_residual_conv_pays_alone(monkeypatch):
    """Read from the device, not typed in: another device, another figure, none at all
    where residual convs cost the same alone."""
    from ttmpd.profiler import get_backend

    assert get_backend("fake").probe_rules().isolation == ()
    for us in (3.0, 9.0):
        monkeypatch.setenv("TTMPD_FAKE_RESIDUAL_ALONE_US", str(us))
        (cost,) = get_backend("fake").probe_rules().isolation
        assert cost.variant == "conv+residual"
        assert cost.overhead_ms == pytest.approx(us * 1e-3, rel=0.05)
        assert cost.ns_per_element == pytest.approx(0.5, rel=0.05)
