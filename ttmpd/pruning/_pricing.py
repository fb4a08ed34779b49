"""Predicted latency of pruning states: which latency units a group's units shrink.

A pruning state maps a group id to the number of its units removed. Each prunable group is
priced through a producing member's latency unit (matched by module path):

* plain and conv-group groups take the coupling of the latency group
  (:class:`ttmpd.lut.PruneSavings`) that unit belongs to: removing ``k`` units removes
  ``k * s`` of its channels, ``s`` the member's channels per unit (1, or ``G`` per
  conv-group offset) over the latency group's factor for that member;
* attention heads and head dims shrink their own members only (``qkv`` rows, ``proj``
  inputs: ``3 D`` and ``D`` per head), from the group's index maps; the latency groups
  do not know the head layout. Heads and head dims of one module multiply: a member with
  ``c·H·D`` channels keeps ``c·(H − k)(D − j)`` of them after removing ``k`` heads and
  ``j`` head dims, so the linear shifts ``k·cD + j·cH`` are corrected by ``−k·j·c``.
* a head group also removes whole heads from the module's attention units (the fused
  ``sdpa``, or the ``matmul``, ``softmax``, ``matmul`` parts, named after the module):
  ``in_channels / heads`` and ``out_channels / heads`` channels and one head per head;
* a head-dims group shrinks the per-head size of those units: ``H`` channels per dim
  (``H`` = the unit's heads) from both sides of ``sdpa`` (q/k and v dims), from the input
  of the scores ``matmul`` and the output of the weighted-values ``matmul``; the softmax
  over the scores keeps its size. With ``k`` heads and ``j`` dims removed a side of
  ``H·D`` keeps ``(H − k)(D − j)``, the same overlap correction as above.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from ..lut import PruneSavings
from ._attention import HEAD_DIMS, HEADS
from ._groups import ChannelGroup
from ._units import CHANNEL, CONV_GROUPS

logger = logging.getLogger(__name__)


class GroupPricing:
    """Latency (ms) of pruning states of ``groups``, from ``savings``' predictor."""

    def __init__(self, groups: Sequence[ChannelGroup], savings: PruneSavings) -> None:
        self.savings = savings
        names = {u.name: i for i, u in enumerate(savings.extraction.units)}
        by_unit: dict[tuple[str, str], tuple[str, float]] = {}
        for lut_group in savings.groups.values():
            for i, dim, factor in lut_group.members:
                key = (savings.extraction.units[i].name, dim)
                by_unit.setdefault(key, (lut_group.id, float(factor)))
        #: group id -> latency-group id (plain groups) and latency channels per unit
        self.lut_id: dict[str, str] = {}
        self.lut_scale: dict[str, float] = {}
        #: group id -> (unit index, 0 in | 1 out | 2 heads, channels (or heads) removed per
        #: group unit)
        self.members: dict[str, list[tuple[int, int, float]]] = {}
        for g in groups:
            if g.unit in (CHANNEL, CONV_GROUPS):
                for piece in g.slices:
                    if piece.side == "out" and (piece.path, "out") in by_unit:
                        lut, factor = by_unit[(piece.path, "out")]
                        scale = len(piece.indices) / g.channels / (factor or 1.0)
                        self.lut_id[g.id], self.lut_scale[g.id] = lut, scale
                        self.members[g.id] = [
                            (i, 0 if dim == "in" else 1, f * scale)
                            for i, dim, f in savings.groups[lut].members
                        ]
                        break
            else:
                found = [
                    (names[p.path], 0 if p.side == "in" else 1, len(p.indices) / g.channels)
                    for p in g.slices
                    if p.path in names
                ]
                if g.unit == HEADS:
                    found += self._attention_members(g.id.removesuffix(f"#{HEADS}"))
                elif g.unit == HEAD_DIMS:
                    module = g.id.removesuffix(f"#{HEAD_DIMS}")
                    found += self._attention_dim_members(module, g.channels)
                if found:
                    self.members[g.id] = found
            if g.prunable and g.id not in self.members:
                logger.warning("group %s has no priced unit; it is left unpruned", g.id)
        #: (heads group, head-dims group, [(unit, side, c)]): the members they share
        self.overlaps = [self._overlap(g.id) for g in groups if g.unit == HEAD_DIMS]
        self.overlaps = [o for o in self.overlaps if o is not None]

    def _overlap(self, dims_id: str) -> tuple[str, str, list[tuple[int, int, float]]] | None:
        """Members shared by a module's heads and head-dims groups, with ``c = per head ·
        per dim / channels`` (the channels removed per removed (head, dim) pair)."""
        heads_id = dims_id.removesuffix(f"#{HEAD_DIMS}") + f"#{HEADS}"
        if heads_id not in self.members or dims_id not in self.members:
            return None
        units = self.savings.extraction.units
        per_head, per_dim = self._per_side(heads_id), self._per_side(dims_id)
        shared = []
        for (i, side), h in per_head.items():
            if (i, side) in per_dim:
                config = units[i].config
                channels = config.in_channels if side == 0 else config.out_channels
                shared.append((i, side, h * per_dim[(i, side)] / channels))
        return heads_id, dims_id, shared

    def _per_side(self, gid: str) -> dict[tuple[int, int], float]:
        total: dict[tuple[int, int], float] = {}
        for i, side, per_unit in self.members[gid]:
            total[(i, side)] = total.get((i, side), 0.0) + per_unit
        return total

    def _attention_members(self, module: str) -> list[tuple[int, int, float]]:
        """``(unit, side, channels per head)`` of the attention units of ``module``."""
        found = []
        for i, unit in enumerate(self.savings.extraction.units):
            named = unit.name == module or unit.name.startswith(f"{module}#")
            if named and unit.config.uses_heads:
                heads = unit.config.heads
                found.append((i, 0, unit.config.in_channels / heads))
                found.append((i, 1, unit.config.out_channels / heads))
                found.append((i, 2, 1.0))
        return found

    def _attention_dim_members(self, module: str, head_dim: int) -> list[tuple[int, int, float]]:
        """``(unit, side, channels per head dim)`` of the attention units of ``module`` whose
        per-head size is the head dim ``head_dim``: both sides of ``sdpa``, the input of the
        first (scores) ``matmul``, the output of the second (weighted values)."""
        found, matmuls = [], 0
        for i, unit in enumerate(self.savings.extraction.units):
            config = unit.config
            named = unit.name == module or unit.name.startswith(f"{module}#")
            if not named or config.op not in ("sdpa", "matmul"):
                continue
            heads = config.heads
            per_in, per_out = config.in_channels // heads, config.out_channels // heads
            if config.op == "sdpa":
                sides = [s for s, per in ((0, per_in), (1, per_out)) if per == head_dim]
            else:  # scores (q·kᵀ) come before the weighted values (p·v) in call order
                side = 0 if matmuls == 0 else 1
                sides = [side] if (per_in, per_out)[side] == head_dim else []
                matmuls += 1
            found += [(i, side, float(heads)) for side in sides]
        return found

    def latency(self, states: Sequence[Mapping[str, int]]) -> np.ndarray:
        """Calibrated whole-model latency (ms) of each state (NaN where a layer vanishes)."""
        count = len(self.savings.extraction.units)
        frame, valid = self.savings._shifted_frame(self.removed_channels(states), np.arange(count))
        totals = self.savings.predictor.calibrated_totals(
            frame, len(states), inputs=self.savings.graph
        )
        return np.where(valid, totals, np.nan)

    def removed_channels(self, states: Sequence[Mapping[str, int]]) -> np.ndarray:
        """Channels each state removes from each latency unit's input (``[..., 0]``) and
        output (``[..., 1]``), and the heads it removes from attention units (``[..., 2]``).
        Shape ``(n_states, n_units, 3)``."""
        count = len(self.savings.extraction.units)
        shifts = np.zeros((len(states), count, 3))
        for row, state in enumerate(states):
            for gid, k in state.items():
                for i, side, per_unit in self.members[gid] if k else ():
                    shifts[row, i, side] += k * per_unit
            for heads_id, dims_id, shared in self.overlaps:
                both = state.get(heads_id, 0) * state.get(dims_id, 0)
                for i, side, c in shared if both else ():
                    shifts[row, i, side] -= both * c
        return shifts

    def curve(self, group: ChannelGroup) -> np.ndarray:
        """The group's latency staircase (ms) by units removed, ``0 .. channels - 1``."""
        if group.id in self.lut_id:
            curve = self.savings._curve(self.lut_id[group.id])
            at = np.rint(np.arange(group.channels) * self.lut_scale[group.id]).astype(int)
            return np.where(at < len(curve), curve[np.minimum(at, len(curve) - 1)], np.nan)
        return self.latency([{group.id: k} for k in range(group.channels)])


__all__ = ["GroupPricing"]
