import pytest
import torch
from nets import UNITS

from ttmpd.errors import InputError
from ttmpd.profiler import UnitConfig, build_unit, with_channels


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.op)
def test_build_unit_runs_with_the_declared_output_shape(unit):
    module, inputs = build_unit(unit)
    with torch.inference_mode():
        out = module(*inputs)
    expected = (
        (unit.batch, unit.out_channels)
        if unit.op in ("linear", "softmax")
        else (unit.batch, unit.out_channels, unit.out_h, unit.out_w)
    )
    assert tuple(out.shape) == expected
    assert not module.training


def test_key_is_canonical_and_distinguishes_configs():
    a = UNITS[0]
    assert a.key == UnitConfig(**a.__dict__).key
    assert a.key != a.replace(out_channels=15).key
    assert a.key != a.replace(act="relu").key
    assert len({u.key for u in UNITS}) == len(UNITS)


def test_cost_counts():
    conv = UNITS[0]
    assert conv.macs == 2 * 16 * 5 * 5 * 8 * 3 * 3
    assert conv.params == 16 * 8 * 9 + 16
    dw = UNITS[1]
    assert dw.is_depthwise and dw.macs == 8 * 6 * 6 * 9
    residual = UNITS[2]
    assert residual.input_elements == 4 * 36 + 8 * 36
    assert UNITS[3].macs == 3 * 12 * 5
    assert UNITS[10].input_elements == 4 * 25 + 4


def test_with_channels_keeps_depthwise_coupled():
    dw = with_channels(UNITS[1], 4, 4)
    assert dw.groups == 4 and dw.in_channels == dw.out_channels == 4
    bn = with_channels(UNITS[4], 3, 999)
    assert bn.in_channels == bn.out_channels == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"op": "deconv"}, "unknown unit op"),
        ({"op": "act"}, "needs an activation"),
        ({"op": "act", "act": "swishy"}, "unknown activation"),
        ({"op": "conv", "groups": 3}, "groups=3"),
        ({"op": "conv", "batch": 0}, "batch must be >= 1"),
        ({"op": "conv", "dtype": "int8"}, "unsupported dtype"),
    ],
)
def test_invalid_configs_raise(kwargs, message):
    base = {"op": "conv", "batch": 1, "in_channels": 4, "out_channels": 4}
    with pytest.raises(InputError, match=message):
        UnitConfig(**{**base, **kwargs})
