"""Grouped (not depthwise) convs: units are offsets in every conv group; pruning = masking."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ttmpd.pruning import ChannelMasker, apply_plan, channel_groups, plan_from_removed


class Grouped(nn.Module):  # conv a -> grouped conv g (4 groups of 4) -> conv b
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.bn = nn.BatchNorm2d(16)
        self.g = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.b = nn.Conv2d(16, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.b(self.g(self.bn(self.a(x)).relu()).relu()).mean((2, 3)))


@pytest.fixture
def x8():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = Grouped().eval()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2)
        model.bn.bias.normal_()  # masked channels must be zero after the BN too
    return model


def test_grouped_conv_groups_count_offsets(net, x8):
    groups = {g.id: g for g in channel_groups(net, x8)}
    a, g = groups["a"], groups["g"]
    assert a.prunable and g.prunable and a.unit == g.unit == "conv_groups"
    assert a.channels == g.channels == 4  # 16 channels = 4 conv groups of 4: 4 offsets
    assert set(a.members) == {("a", "out"), ("bn", "out"), ("g", "in")}
    assert set(g.members) == {("g", "out"), ("b", "in")}
    a_out = next(s for s in a.slices if s.path == "a")
    assert all(root == idx % 4 for idx, root in zip(a_out.indices, a_out.root_indices, strict=True))


def test_pruning_offsets_equals_masking_every_conv_group(net, x8):
    groups = channel_groups(net, x8)
    plan = plan_from_removed(groups, {"a": [1], "g": [0, 3]}, model=net)
    pruned = apply_plan(net, x8, plan)
    assert (pruned.g.in_channels, pruned.g.out_channels, pruned.g.groups) == (12, 8, 4)
    reference = copy.deepcopy(net)
    with torch.no_grad():  # by hand: offset 1 of a's 4 blocks, offsets 0 and 3 of g's
        for row in (1, 5, 9, 13):
            reference.a.weight[row] = 0
            reference.a.bias[row] = 0
            reference.bn.weight[row] = 0
            reference.bn.bias[row] = 0
        for row in (0, 3, 4, 7, 8, 11, 12, 15):
            reference.g.weight[row] = 0
            reference.g.bias[row] = 0
        want = reference(x8)
        torch.testing.assert_close(pruned(x8), want, atol=1e-5, rtol=1e-4)
        masker = ChannelMasker(net, groups)
        torch.testing.assert_close(masker.masked({"a": [1], "g": [0, 3]})(x8), want)
