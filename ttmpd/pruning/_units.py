"""Group units wider than one channel: conv-group offsets, attention heads, head dims.

A :class:`~ttmpd.pruning.ChannelGroup` counts *units*; most groups' unit is one channel. A
:class:`UnitLayout` says which Torch-Pruning root indices (output channels of the group's
root module) one unit stands for, computed from the module's *current* sizes so a plan's
original unit indices stay valid while other groups are pruned:

``channel``
    unit ``u`` is root channel ``u``.
``conv_groups``
    the group feeds or produces a grouped (not depthwise) conv with ``G`` groups: its
    channels are ``G`` blocks of width ``w`` and unit ``u`` is offset ``u`` in every block,
    root channels ``g*w + u``. Removing the same offsets from every block keeps the conv's
    ``G`` groups of equal width (Torch-Pruning's grouped-conv input pruning assumes it);
    with several grouped convs, ``G`` is the lcm of their group counts.
``heads``, ``head_dims``
    attention heads and head dims (:mod:`ttmpd.pruning._attention`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from . import _attention

CHANNEL = "channel"
CONV_GROUPS = "conv_groups"
KINDS = (CHANNEL, CONV_GROUPS, _attention.HEADS, _attention.HEAD_DIMS)


@dataclass(frozen=True)
class UnitLayout:
    """``kind`` (module docstring); ``blocks``: G for conv_groups; ``module``: the
    attention module path for heads/head_dims."""

    kind: str = CHANNEL
    blocks: int = 1
    module: str = ""

    def root_indices(self, model: nn.Module, root_channels: int, units: Sequence[int]):
        """Root indices of ``units`` given the root's current ``root_channels``."""
        if self.kind == CHANNEL:
            return sorted(int(u) for u in units)
        if self.kind == CONV_GROUPS:
            width = root_channels // self.blocks
            return sorted(g * width + int(u) for g in range(self.blocks) for u in units)
        return _attention.root_indices(model.get_submodule(self.module), self.kind, units)


def grouped_conv_blocks(modules: Sequence[nn.Module]) -> int:
    """lcm of the group counts of the grouped (not depthwise) convs among ``modules``."""
    blocks = 1
    for m in modules:
        grouped = isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1
        if grouped and not m.groups == m.in_channels == m.out_channels:
            blocks = math.lcm(blocks, m.groups)
    return blocks


__all__ = ["CHANNEL", "CONV_GROUPS", "KINDS", "UnitLayout", "grouped_conv_blocks"]
