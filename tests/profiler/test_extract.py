from collections import Counter

import pytest
import torch
from nets import ConcatNet, DepthwiseNet, ResidualNet, SENet
from torch import nn

from ttmpd.errors import InputError
from ttmpd.profiler import INPUT, extract_units


def ops(extraction):
    return [u.config.op for u in extraction.units]


def test_residual_block_eager_units_and_dataflow(example_input):
    e = extract_units(ResidualNet().eval(), example_input, fusion="none")
    assert ops(e) == [
        "conv", "bn", "act", "conv", "bn", "act", "conv", "bn", "add", "act", "gap", "linear"
    ]  # fmt: skip
    add = e.units[8]
    assert add.inputs == (7, 2)  # bn2 output + the stem's relu (the identity branch)
    assert add.config.n_inputs == 2 and not add.config.broadcast
    assert e.units[0].name == "stem.0" and e.units[3].name == "conv1"
    assert e.units[-1].name == "fc" and e.units[-1].config.out_channels == 10
    assert e.units[0].fixed_in and not e.units[0].fixed_out
    assert e.units[-1].fixed_out and not e.units[-1].fixed_in
    assert dict(e.free_ops) == {"flatten": 1}
    assert e.uncovered == ()


def test_conv_fields_and_macs(example_input):
    conv1 = extract_units(ResidualNet().eval(), example_input).units[3].config
    assert (conv1.in_channels, conv1.out_channels, conv1.in_h, conv1.out_h) == (16, 16, 16, 16)
    assert (conv1.kernel_h, conv1.stride_h, conv1.pad_h, conv1.groups) == (3, 1, 1, 1)
    assert conv1.macs == 16 * 16 * 16 * 16 * 3 * 3
    assert conv1.dtype == "float32" and conv1.batch == 1


def test_fusions_follow_the_backend(example_input):
    net = ResidualNet().eval()
    cba = extract_units(net, example_input, fusion="conv-bn-act")
    assert ops(cba) == ["conv", "conv", "conv", "add", "act", "gap", "linear"]
    assert [(u.config.bn, u.config.act) for u in cba.units[:3]] == [
        (True, "relu"),
        (True, "relu"),
        (True, ""),
    ]
    assert cba.units[3].inputs == (2, 0)
    full = extract_units(net, example_input, fusion="conv-bn-add-act")
    assert ops(full) == ["conv", "conv", "conv", "gap", "linear"]
    fused = full.units[2].config
    assert fused.n_inputs == 2 and fused.act == "relu" and fused.bn
    assert full.units[2].inputs == (1, 0)  # conv1 output and the identity branch
    assert full.units[2].aten == "conv2d+batch_norm+add+relu"


def test_depthwise_and_relu6(example_input):
    e = extract_units(DepthwiseNet().eval(), example_input)
    dw = [u.config for u in e.units if u.config.op == "conv" and u.config.groups > 1]
    assert len(dw) == 1 and dw[0].is_depthwise and dw[0].groups == 32
    assert dw[0].macs == 32 * 8 * 8 * 9
    assert Counter(u.config.act for u in e.units if u.config.op == "act") == {"relu6": 2}
    assert "gap" in ops(e)  # x.mean((2, 3)) is a global average pool


def test_concat_and_maxpool(example_input):
    e = extract_units(ConcatNet().eval(), example_input)
    cat = next(u for u in e.units if u.config.op == "cat")
    assert cat.config.in_channels == 12 and cat.config.n_inputs == 2
    assert len(cat.inputs) == 2
    pool = next(u.config for u in e.units if u.config.op == "maxpool")
    assert (pool.kernel_h, pool.stride_h, pool.out_h) == (2, 2, 8)


def test_squeeze_excitation_multiply_is_broadcast(example_input):
    e = extract_units(SENet().eval(), example_input)
    mul = next(u for u in e.units if u.config.op == "mul")
    assert mul.config.broadcast and mul.config.in_channels == 16 and mul.config.in_h == 16
    assert mul.fixed_out  # the model output: its channels cannot be pruned
    assert ops(e).count("conv") == 3 and "gap" in ops(e)


class _Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pixel_shuffle(self.up(self.conv(x)) * 2.0, 2)


def test_ops_without_a_unit_are_reported_not_dropped(example_input):
    e = extract_units(_Odd().eval(), example_input)
    uncovered = Counter(op.aten for op in e.uncovered)
    assert uncovered == {"conv_transpose2d": 1, "pixel_shuffle": 1}
    names = {op.aten: op.name for op in e.uncovered}
    assert names["conv_transpose2d"] == "up"
    assert ops(e) == ["conv", "mul"]  # a product with a scalar is a one-input mul unit
    assert e.units[1].config.n_inputs == 1


class _ShapeMask(nn.Module):
    """Swin-style: a mask built from the input's shape only (``new_zeros``, ``fill_``,
    ``masked_fill``), then applied to the data."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        mask = y.new_zeros(y.shape[-2:])
        mask[:2].fill_(1.0)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        self.mask = mask  # a buffer-like constant (Swin adds it to attention logits)
        return y * torch.zeros_like(y).eq(0)


def test_ops_on_shape_only_factories_are_constants(example_input):
    e = extract_units(_ShapeMask().eval(), example_input)
    assert e.uncovered == ()  # no fill_, ne, eq, masked_fill on the mask
    assert ops(e) == ["conv", "mul"]


def test_model_state_is_restored_and_input_untouched(example_input):
    net = ResidualNet().train()
    before = example_input.clone()
    extract_units(net, example_input)
    assert net.training
    assert torch.equal(example_input, before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_unknown_fusion_is_an_input_error(example_input):
    with pytest.raises(InputError, match="unknown fusion"):
        extract_units(ResidualNet(), example_input, fusion="magic")


def test_to_frame_has_one_row_per_unit(example_input):
    e = extract_units(ResidualNet().eval(), example_input)
    frame = e.to_frame()
    assert len(frame) == len(e.units)
    assert {"name", "op", "in_channels", "macs", "fixed_in"} <= set(frame.columns)
    assert INPUT == -1 and frame["inputs"].iat[0] == "-1"


def test_in_place_dropout_is_free_in_eval_mode():
    """torchvision's classifiers call ``dropout_`` (in place); in eval mode it costs nothing."""
    import torch
    from torch import nn

    from ttmpd.profiler import extract_units

    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 8), nn.Dropout(0.2, inplace=True),
                        nn.Linear(8, 2)).eval()  # fmt: skip
    extraction = extract_units(net, torch.randn(1, 8))
    assert not extraction.uncovered
    assert [u.config.op for u in extraction.units] == ["linear", "linear"]
