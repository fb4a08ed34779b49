"""Architectures torch-pruning mishandles: their groups are reported, not silently broken."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from ttmpd.errors import InputError
from ttmpd.pruning import apply_plan, channel_groups, plan_from_removed, random_plan


class InputResidual(nn.Module):  # x + conv(x): the conv's channels are the image channels
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 3, 3, padding=1)
        self.d = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.d(x + self.c(x)).mean((2, 3)))


class Chunked(nn.Module):  # chunk(2) needs both halves to keep equal widths
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(4, 6, 1)
        self.c = nn.Conv2d(4, 6, 1)
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        u, v = self.a(x).chunk(2, dim=1)
        return self.fc(torch.cat([self.b(u), self.c(v)], 1).mean((2, 3)))


class Shuffled(nn.Module):  # a channel shuffle through view/transpose
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(self.b(y).mean((2, 3)))


@pytest.fixture
def x8():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("net_cls", "expected"),
    [
        (InputResidual, {"c": False, "d": True, "fc": False}),
        (Chunked, {"a": False, "b": True, "c": True, "fc": False}),
        (Shuffled, {"a": False, "b": True, "fc": False}),
    ],
)
def test_unsupported_groups_are_not_prunable(net_cls, expected, x8):
    net = net_cls().eval()
    groups = channel_groups(net, x8)
    assert {g.id: g.prunable for g in groups} == expected
    assert all(g.reason for g in groups if not g.prunable)
    pruned = apply_plan(net, x8, random_plan(net, x8, groups, 0.3, seed=0))
    assert pruned(x8).shape == net(x8).shape


def test_channel_shuffle_is_named_in_the_reason(x8):
    groups = {g.id: g for g in channel_groups(Shuffled().eval(), x8)}
    assert "channel shuffle" in groups["a"].reason


def test_applying_a_broken_prune_fails_cleanly(x8):
    net = Chunked().eval()
    groups = channel_groups(net, x8)
    forced = [g if g.id != "a" else replace(g, prunable=True, reason="") for g in groups]
    plan = plan_from_removed(forced, {"a": [0, 1, 2]}, model=net)
    with pytest.raises(InputError, match="pruned model fails on the example input"):
        apply_plan(net, x8, plan)
    assert net.a.out_channels == 8 and net(x8).shape == (2, 2)  # the original is intact
