"""Predicted latency savings of channel prunes, without building or running pruned models.

Coupled channel groups come from the extracted dataflow (no pruning library needed): each
unit has an input and an output channel dimension, and a weighted union-find joins

* a producer's output with its consumer's input (factor ``in / out``: a linear layer after
  ``flatten`` of ``C x H x W`` sees ``H·W`` inputs per channel),
* input and output of channel-preserving units (bn, activations, pools, add, mul, layer
  norms, token concat) and of depthwise convs; of attention units (heads x per-head size)
  with factor ``out / in``, since they lose whole heads,
* all inputs of a residual add (through the rule above, since they feed one add); for a
  conv with a fused residual input (ONNX Runtime NCHWc) the residual joins the conv's
  *output*, its first input the conv's input.

A concat's output is the sum of its inputs: pruning any input group shrinks the concat and
its consumers, so those dimensions join every input group. The image channels and the
classifier outputs make their groups non-prunable. A group is named after the first unit
whose output it contains (for a conv root, its module path — the name Torch-Pruning and
:mod:`ttmpd.pruning` use too); a group with no output dimension (the image channels) is
named ``<first unit>:in``.

Removing ``k`` channels from a group changes every member dimension by ``k·factor``; the
saving is ``a · (Σ old − Σ new)`` over the affected units, with ``a`` the predictor's
calibration slope. For each group, the latency of its affected units is predicted for every
possible channel count at once on first use (one batched regression call), so later queries
are table look-ups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import InputError
from ..profiler import CHANNEL_PRESERVING, Extraction, extract_units
from ._features import configs_frame, weight_bytes, with_derived_columns
from ._predictor import LatencyPredictor, unit_inputs


@dataclass(frozen=True)
class CoupledChannels:
    """Coupled channel dimensions: ``members`` are ``(unit index, "in"|"out", factor)``."""

    id: str
    channels: int
    members: tuple[tuple[int, str, int], ...]
    prunable: bool


class _UnionFind:
    """Weighted union-find: ``size(x) = factor(x) · size(root(x))``."""

    def __init__(self) -> None:
        self.parent: dict = {}
        self.factor: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        self.factor.setdefault(x, 1.0)
        if self.parent[x] == x:
            return x
        root = self.find(self.parent[x])
        self.factor[x] *= self.factor[self.parent[x]]
        self.parent[x] = root
        return root

    def union(self, a, b, ratio: float) -> None:
        """Join so that ``size(b) = ratio · size(a)``."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        # size(b) = fb·size(rb) = ratio·fa·size(ra)  =>  size(rb) = ratio·fa/fb · size(ra)
        self.parent[rb] = ra
        self.factor[rb] = ratio * self.factor[a] / self.factor[b]


def coupled_channels(extraction: Extraction) -> list[CoupledChannels]:
    """Coupled channels of an extracted model, one record per channel group (see module
    docstring)."""
    units = extraction.units
    uf = _UnionFind()
    cat_inputs: dict[int, list] = {}
    for u in units:
        c = u.config
        uf.find((u.index, "in"))
        uf.find((u.index, "out"))
        if c.op in CHANNEL_PRESERVING or c.is_depthwise or (c.op == "cat" and c.layout == "nhwc"):
            uf.union((u.index, "in"), (u.index, "out"), 1.0)  # (a token cat: equal channels)
        elif c.uses_heads:  # pruned in whole heads: in and out shrink together
            uf.union((u.index, "in"), (u.index, "out"), c.out_channels / c.in_channels)
        if c.op == "cat" and c.layout != "nhwc":
            cat_inputs[u.index] = [(s, "out") for s in u.inputs if s >= 0]
            continue
        for n, s in enumerate(u.inputs):
            if s < 0:
                continue
            produced = units[s].config.out_channels
            if c.op == "conv" and c.n_inputs > 1 and n > 0:  # fused residual: output-shaped
                uf.union((s, "out"), (u.index, "out"), c.out_channels / produced)
            else:
                uf.union((s, "out"), (u.index, "in"), c.in_channels / produced)

    def dim_size(unit: int, dim: str) -> int:
        cfg = units[unit].config
        return cfg.in_channels if dim == "in" else cfg.out_channels

    roots: dict = {}
    for u in units:
        for dim in ("out", "in"):
            roots.setdefault(uf.find((u.index, dim)), []).append((u.index, dim))
    # concat: its output dims (and consumers) belong to every input group as well
    extra: dict = {}
    for cat, inputs in cat_inputs.items():
        out_root = uf.find((cat, "out"))
        for node in inputs:
            extra.setdefault(uf.find(node), []).extend(roots.get(out_root, []))
            extra[uf.find(node)].append((cat, "in"))
    fixed_roots = set()
    for u in units:
        if u.fixed_in:
            fixed_roots.add(uf.find((u.index, "in")))
        if u.fixed_out:
            fixed_roots.add(uf.find((u.index, "out")))
    cat_out_roots = {uf.find((cat, "out")) for cat in cat_inputs}
    groups = []
    for root, members in roots.items():
        if root in cat_out_roots:
            continue  # pruned through its input groups
        anchor = next((m for m in members if m[1] == "out"), members[0])
        # counted in the group's narrowest dimension, so that every factor is a whole
        # number: an attention group counts attention channels, its qkv output 3 each
        unit = min(members, key=lambda m: uf.factor[m])
        if uf.factor[unit] >= uf.factor[anchor]:
            unit = anchor
        listed = {}
        for m in members:
            listed[m] = max(1, round(uf.factor[m] / uf.factor[unit]))
        for m in extra.get(root, []):
            listed.setdefault(m, 1)
        channels = dim_size(*unit)
        tied_to_cat_fixed = any(uf.find(m) in fixed_roots for m in extra.get(root, []))
        groups.append(
            CoupledChannels(
                id=units[anchor[0]].name + ("" if anchor[1] == "out" else ":in"),
                channels=channels,
                members=tuple((i, d, f) for (i, d), f in sorted(listed.items())),
                prunable=root not in fixed_roots and not tied_to_cat_fixed and channels > 1,
            )
        )
    return groups


class PruneSavings:
    """Predicted savings (ms) of removing ``k`` channels from a group of one model.

    ``savings([(group_id, k), ...])`` is vectorised and cached; ``costs()`` gives the
    per-group latency cost (ms per channel removed) for other pruning code.
    """

    def __init__(
        self, predictor: LatencyPredictor, model: nn.Module, example_input: torch.Tensor
    ) -> None:
        self.predictor = predictor
        self.extraction = extract_units(model, example_input, predictor.fusion_)
        self.groups = {g.id: g for g in coupled_channels(self.extraction)}
        self._curves: dict[str, np.ndarray] = {}
        self._base_frame = configs_frame([u.config for u in self.extraction.units])
        #: who feeds each unit, the same in every prune (``LatencyPredictor.reorder_delta_ms``)
        self.graph = unit_inputs(self.extraction.units)
        #: the model's weight bytes, the footprint a single group's curve is priced at
        self.footprint_bytes = float(weight_bytes(self._base_frame).sum())

    def _group(self, group_id: str) -> CoupledChannels:
        try:
            return self.groups[group_id]
        except KeyError:
            raise InputError(
                f"unknown channel group {group_id!r}; choose one of {sorted(self.groups)[:8]}..."
            ) from None

    def _shifted_frame(
        self, shifts: np.ndarray, units: np.ndarray
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Configs of ``units`` (repeated per row of ``shifts``) with channels reduced.

        ``shifts`` has shape ``(rows, len(units), 2)``: channels removed from (in, out), or
        ``(rows, len(units), 3)`` with the heads removed as a third column. With two columns
        an attention unit keeps its per-head sizes (its head count follows ``in_channels``);
        with three its head count is ``heads − removed heads`` and its channels may change
        the per-head sizes too (head dims). Returns the table-shaped frame and a per-row
        validity mask.
        """
        rows, n = shifts.shape[0], len(units)
        base = self._base_frame.iloc[units]
        frame = base.iloc[np.tile(np.arange(n), rows)].reset_index(drop=True)
        shifts = np.rint(shifts).astype(np.int64)  # keys must print ints ("16", not "16.0")
        c_in = frame["in_channels"].to_numpy(dtype=np.int64) - shifts[:, :, 0].reshape(-1)
        c_out = frame["out_channels"].to_numpy(dtype=np.int64) - shifts[:, :, 1].reshape(-1)
        groups = frame["groups"].to_numpy()
        depthwise = (
            (frame["op"].to_numpy() == "conv")
            & (groups > 1)
            & (groups == frame["in_channels"].to_numpy())
        )
        groups = np.where(depthwise, c_in, groups)
        ok = (c_in >= 1) & (c_out >= 1) & (c_in % np.maximum(groups, 1) == 0)
        ok &= c_out % np.maximum(groups, 1) == 0
        heads = frame["heads"].to_numpy(dtype=np.int64)
        attention = np.isin(frame["op"].to_numpy(), ("matmul", "sdpa")) | (heads > 1)
        if shifts.shape[2] > 2:
            new_heads = np.where(attention, heads - shifts[:, :, 2].reshape(-1), heads)
            fits = (c_in % np.maximum(new_heads, 1) == 0) & (c_out % np.maximum(new_heads, 1) == 0)
            ok &= ~attention | (fits & (new_heads >= 1))
        else:
            per_head = frame["in_channels"].to_numpy(dtype=np.int64) // heads
            new_heads = np.where(attention, c_in // per_head, heads)
            ok &= ~attention | ((c_in % per_head == 0) & (new_heads >= 1))
        frame["in_channels"] = np.where(ok, c_in, frame["in_channels"])
        frame["out_channels"] = np.where(ok, c_out, frame["out_channels"])
        frame["groups"] = np.where(ok, groups, frame["groups"])
        frame["heads"] = np.where(ok, new_heads, heads)
        return with_derived_columns(frame), ok.reshape(rows, n).all(axis=1)

    def _curve(self, group_id: str) -> np.ndarray:
        """Latency (ms) of the group's units after removing k = 0..C-1, each unit scaled by
        its calibration slope (no offset: it cancels in a saving). Weight streaming is priced
        at the unpruned model's footprint (:attr:`footprint_bytes`): a single group's curve
        does not see what the other groups remove."""
        curve = self._curves.get(group_id)
        if curve is not None:
            return curve
        group = self._group(group_id)
        units = np.array(sorted({i for i, _, _ in group.members}))
        per_k = np.zeros((1, len(units), 2))
        position = {u: j for j, u in enumerate(units)}
        for i, dim, f in group.members:
            per_k[0, position[i], 0 if dim == "in" else 1] = f
        shifts = np.arange(group.channels)[:, None, None] * per_k
        frame, valid = self._shifted_frame(shifts, units)
        scaled = self.predictor.scaled_units(frame, footprint_bytes=self.footprint_bytes)
        latency = scaled.reshape(group.channels, len(units)).sum(axis=1)
        curve = np.where(valid, latency, np.nan)
        self._curves[group_id] = curve
        return curve

    def latencies(self, states: Sequence[Mapping[str, int]]) -> np.ndarray:
        """Calibrated whole-model latency (ms) with ``k`` channels removed per group, per state.

        Unlike summing single-group savings this is exact when groups share units (a conv
        whose input and output belong to different pruned groups).
        """
        units = np.arange(len(self.extraction.units))
        shifts = np.zeros((len(states), len(units), 2))
        for row, state in enumerate(states):
            for group_id, k in state.items():
                for i, dim, f in self._group(group_id).members:
                    shifts[row, i, 0 if dim == "in" else 1] += k * f
        frame, valid = self._shifted_frame(shifts, units)
        totals = self.predictor.calibrated_totals(frame, len(states), inputs=self.graph)
        return np.where(valid, totals, np.nan)

    def savings(self, candidates: Sequence[tuple[str, int]]) -> np.ndarray:
        """Calibrated saving in ms of each ``(group_id, k removed)`` candidate."""
        out = np.empty(len(candidates))
        for n, (group_id, k) in enumerate(candidates):
            curve = self._curve(group_id)
            if not 0 <= k < len(curve):
                raise InputError(
                    f"cannot remove {k} of {len(curve)} channels from group {group_id!r}"
                )
            out[n] = curve[0] - curve[k]
        return out

    def costs(self, step: int = 1) -> pd.DataFrame:
        """Per prunable group: channels and predicted ms saved per channel removed.

        The cost is averaged over removing ``step`` channels (use 8 to follow the CPU
        staircase): ``(saving(step)) / step``.
        """
        rows = []
        for g in self.groups.values():
            if not g.prunable:
                continue
            k = min(step, g.channels - 1)
            saving = float(self.savings([(g.id, k)])[0])
            rows.append(
                {"group": g.id, "channels": g.channels, "ms_per_channel": saving / max(k, 1)}
            )
        return pd.DataFrame(rows, columns=["group", "channels", "ms_per_channel"])
