"""The search-space grid: unit configurations that channel pruning can produce.

For each channel dimension a unit's prunable (see ``LayerUnit.fixed_in/fixed_out``), the
candidate counts come from one of three rules (:meth:`GridConfig.channel_options`):

* the **staircase grid** (the default): latency is a staircase in the channel count, flat
  across the counts a kernel pads to the same width (the probed blocked layout's block,
  :class:`~ttmpd.profiler.DeviceRules`) and stepping between widths. Of the multiples of
  ``count_multiple`` below ``c`` (and ``c``), the largest count of each width is kept (one
  per step, none in the flat part), then, walking down from ``c``, only counts whose width
  is at least ``min_rel_gap`` below the last kept one: every step while steps are large
  relative to the count, fewer where the staircase is long and nearly linear. A dimension
  keeps at least two counts. So the grid grows with the log of a unit's width rather than
  with the width, and follows the device's block rather than a fixed step;
* a channel step ``s`` (``c, c - r, c - r - s, ...`` down to ``s``, where ``r = c mod s``
  or ``s``: every multiple of ``s`` below ``c`` plus ``c`` itself);
* keep-fractions (``round(f * c)``, at least 1).

Units on channels-last tensors (tokens, ConvNeXt's NHWC) vary their channels (the last
dim), never tokens or height. Attention units (``UnitConfig.uses_heads``: matmul, sdpa,
softmax over scores) vary the head count, on the same rule applied to heads with a count
multiple of 1, and keep their per-head sizes.

Convolutions and linear layers with both dimensions prunable take the cross product of in
and out counts; when that exceeds ``max_variants_per_unit`` the uniform-ratio diagonal is
kept whole and the rest is a seeded random sample (seeded by the unit, so the same unit
always yields the same grid). Depthwise convs and channel-preserving ops have one dimension.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import InputError
from ._extract import LayerUnit
from ._rules import DeviceRules
from ._units import CHANNEL_PRESERVING, UnitConfig, with_channels

#: ``work(count)``: the channel width a kernel computes for ``count`` channels.
Work = Callable[[int], int]

_ONE_DIM = CHANNEL_PRESERVING | {"cat"}


@dataclass(frozen=True)
class GridConfig:
    """How densely to sample channel counts: the staircase grid unless ``channel_step`` or
    ``keep_fractions`` is given (at most one of them; see the module docstring).

    ``count_multiple`` and ``min_rel_gap`` shape the staircase grid. ``off_grid_per_unit``
    adds that many extra variants per unit with channel counts off the grid (not multiples
    of 8, spread over the range, :func:`_off_grid`), so a latency predictor sees misaligned
    counts: on some devices they leave the fast kernel and cost several times more.
    ``sample_fraction`` < 1 profiles sparsely: that share of each unit's grid and of its
    off-grid counts, spread evenly (:func:`unit_variants`); the predictor fills the rest.
    """

    channel_step: int | None = None
    keep_fractions: tuple[float, ...] | None = None
    max_variants_per_unit: int = 64
    off_grid_per_unit: int = 8
    seed: int = 0
    sample_fraction: float = 1.0
    count_multiple: int = 8
    min_rel_gap: float = 0.125

    def __post_init__(self) -> None:
        if self.channel_step is not None and self.keep_fractions is not None:
            raise InputError("give at most one of channel_step or keep_fractions")
        if self.channel_step is not None and self.channel_step < 1:
            raise InputError(f"channel step must be >= 1, got {self.channel_step}")
        if self.keep_fractions is not None and not all(0 < f <= 1 for f in self.keep_fractions):
            raise InputError(f"keep fractions must be in (0, 1], got {self.keep_fractions}")
        if self.max_variants_per_unit < 1:
            raise InputError("max_variants_per_unit must be >= 1")
        if self.off_grid_per_unit < 0:
            raise InputError("off_grid_per_unit must be >= 0")
        if not 0 < self.sample_fraction <= 1:
            raise InputError(f"sample fraction must be in (0, 1], got {self.sample_fraction}")
        if self.count_multiple < 1:
            raise InputError(f"count multiple must be >= 1, got {self.count_multiple}")
        if not 0 <= self.min_rel_gap < 1:
            raise InputError(f"min_rel_gap must be in [0, 1), got {self.min_rel_gap}")

    @property
    def kind(self) -> str:
        """``"staircase"``, ``"step"`` or ``"fractions"``."""
        if self.channel_step is not None:
            return "step"
        return "fractions" if self.keep_fractions is not None else "staircase"

    def channel_options(
        self, channels: int, multiple_of: int = 1, work: Work | None = None
    ) -> list[int]:
        """Channel counts pruning may leave, descending, always including ``channels``.

        ``work`` (staircase grid only): the width a kernel computes for a count (the
        identity, i.e. no staircase, when not given).
        """
        if self.kind == "staircase":
            return _staircase(self, channels, multiple_of, work or (lambda c: c))
        if self.channel_step is not None:
            step = self.channel_step
            opts = {channels, *range(step, channels, step)}
        else:
            opts = {channels, *(max(1, round(f * channels)) for f in self.keep_fractions or ())}
        opts = {c for c in opts if c % multiple_of == 0} | {channels}
        return sorted(opts, reverse=True)


def _staircase(grid: GridConfig, channels: int, multiple_of: int, work: Work) -> list[int]:
    """The staircase grid of one dimension (module docstring), descending."""
    step = grid.count_multiple
    counts = [c for c in range(step, channels, step) if c % multiple_of == 0] + [channels]
    tops: dict[int, int] = {}  # width -> the largest count computed at that width
    for c in counts:
        tops[work(c)] = c
    kept = [channels]
    last = work(channels)
    for width in sorted(tops, reverse=True):
        if tops[width] != channels and width <= (1 - grid.min_rel_gap) * last:
            kept.append(tops[width])
            last = width
    if len(kept) == 1 and len(counts) > 1:  # one flat step: show the table its far end
        kept.append(counts[0])
    return sorted(kept, reverse=True)


def stair_widths(unit: UnitConfig, rules: DeviceRules | None) -> tuple[Work, Work]:
    """``(work_in, work_out)``: the widths the device computes for the unit's in and out
    channel counts, from the probed blocked-layout rule (identity without one, and for
    ops the rule does not cover)."""
    blocked = _layout_class(unit, rules)
    if blocked is None:
        return (lambda c: c), (lambda c: c)
    rule = rules.blocked
    if unit.is_depthwise:

        def depthwise(c: int) -> int:
            return rule.padded_out(c) if blocked(c) else c

        return depthwise, depthwise

    def work_in(c: int) -> int:
        return rule.padded_in(c) if blocked(c) else c

    return work_in, rule.padded_out


def _head_pairs(unit: LayerUnit, grid: GridConfig) -> list[tuple[int, int]]:
    """``(in, out)`` channel pairs of an attention unit with fewer heads (module docstring)."""
    cfg = unit.config
    if unit.fixed_in or unit.fixed_out:
        return [(cfg.in_channels, cfg.out_channels)]
    per_in, per_out = cfg.in_channels // cfg.heads, cfg.out_channels // cfg.heads
    step = 1 if grid.channel_step is not None else None
    heads_grid = dataclasses.replace(grid, count_multiple=1, channel_step=step)
    return [(h * per_in, h * per_out) for h in heads_grid.channel_options(cfg.heads)]


def _cross(
    unit: LayerUnit, grid: GridConfig, rules: DeviceRules | None = None
) -> list[tuple[int, int]]:
    cfg = unit.config
    if cfg.uses_heads:
        return _head_pairs(unit, grid)
    g = cfg.groups if not cfg.is_depthwise else 1
    work_in, work_out = stair_widths(cfg, rules)
    ins = [cfg.in_channels] if unit.fixed_in else grid.channel_options(cfg.in_channels, g, work_in)
    outs = (
        [cfg.out_channels]
        if unit.fixed_out
        else grid.channel_options(cfg.out_channels, g, work_out)
    )
    if cfg.is_depthwise or cfg.op in _ONE_DIM:
        options = ins if not unit.fixed_in else outs
        if unit.fixed_in or unit.fixed_out:
            options = [cfg.in_channels]
        return [(c, c) for c in options]
    pairs = [(i, o) for i in ins for o in outs]
    if len(pairs) <= grid.max_variants_per_unit:
        return pairs
    # keep the uniform-ratio diagonal, sample the rest deterministically
    diagonal = {(i, o) for i, o in pairs if abs(i / cfg.in_channels - o / cfg.out_channels) < 0.07}
    diagonal |= {(cfg.in_channels, cfg.out_channels)}
    rest = sorted(set(pairs) - diagonal)
    rng = random.Random(zlib.crc32(f"{grid.seed}|{cfg.key}".encode()))
    budget = max(0, grid.max_variants_per_unit - len(diagonal))
    return sorted(diagonal) + rng.sample(rest, min(budget, len(rest)))


def _misaligned(
    rng: random.Random,
    band: tuple[int, int],
    channels: int,
    residue: int,
    want: Callable[[int], bool] | None = None,
) -> int:
    """A random count in ``band`` (widened to 8 counts within ``[1, channels]`` when
    narrower), off the multiples of 8 where the band allows: one for which ``want`` holds
    if any does, preferably ``residue`` mod 8."""
    lo, hi = band
    if hi - lo < 7:
        hi = min(channels, lo + 7)
        lo = max(1, hi - 7)
    counts = [c for c in range(lo, hi + 1) if c % 8] or list(range(lo, hi + 1))
    if want is not None:
        counts = [c for c in counts if want(c)] or counts
    return rng.choice([c for c in counts if c % 8 == residue % 8] or counts)


def _strata(rng: random.Random, channels: int, n: int) -> list[tuple[int, int]]:
    """``n`` count ranges ``[lo, hi]`` splitting ``[1, channels]`` evenly, shuffled."""
    edges = [round(i * channels / n) for i in range(n + 1)]
    bands = [(min(lo + 1, max(1, hi)), max(1, hi)) for lo, hi in itertools.pairwise(edges)]
    rng.shuffle(bands)
    return bands


def _layout_class(cfg: UnitConfig, rules: DeviceRules | None) -> Callable[[int], bool] | None:
    """``blocked(c_in)``: whether the device runs the unit in its blocked layout at input
    count ``c_in`` (the probed rule), or None where no rule decides it."""
    rule = rules.blocked if rules is not None else None
    if rule is None or cfg.op != "conv" or (cfg.groups > 1 and not cfg.is_depthwise):
        return None
    return rule.depthwise_is_blocked if cfg.is_depthwise else rule.dense_is_blocked


def _off_grid(
    unit: LayerUnit, grid: GridConfig, rules: DeviceRules | None = None
) -> list[tuple[int, int]]:
    """``off_grid_per_unit`` (in, out) pairs off the multiples of 8, stratified by layout
    class, residue and magnitude.

    The magnitudes come from ``off_grid_per_unit`` equal bands of ``[1, c]``, one per sample
    in shuffled order, so the samples span the range, light prunes (counts just below
    ``c``) included. Kernels switch code paths by alignment, and a count off the fast path
    can cost several times more than the unpruned unit, so each path needs its own data:
    where the device's probed rule decides the layout by the input count, every fourth
    sample takes a count it runs blocked (their padding is off the multiples of 8) and the
    others counts it does not, the first one from the band just below ``c`` (the grid's
    multiples of 8 are blocked already, and three in four random counts are not);
    otherwise (and on the output side) sample j takes residue ``1 + j mod 7`` mod 8 on the
    input and ``1 + 3j mod 7`` on the output, so 7 samples cover every residue on each side.
    """
    cfg = unit.config
    n = grid.off_grid_per_unit
    if n == 0 or (cfg.groups > 1 and not cfg.is_depthwise):
        return []
    if cfg.uses_heads:  # whole heads only: the head grid already has every count
        return []
    rng = random.Random(zlib.crc32(f"off|{grid.seed}|{cfg.key}".encode()))
    in_bands, out_bands = _strata(rng, cfg.in_channels, n), _strata(rng, cfg.out_channels, n)
    blocked = _layout_class(cfg, rules)
    if blocked is not None:  # light prunes: the first sample, the one off the blocked path
        top = in_bands.index(max(in_bands))
        in_bands[0], in_bands[top] = in_bands[top], in_bands[0]
    one_dim = cfg.is_depthwise or cfg.op in _ONE_DIM
    pairs = []
    for j in range(n):
        want = None if blocked is None else (lambda c, j=j: blocked(c) == (j % 4 == 3))
        c_in = (
            cfg.in_channels
            if unit.fixed_in
            else _misaligned(rng, in_bands[j], cfg.in_channels, 1 + j % 7, want)
        )
        c_out = (
            cfg.out_channels
            if unit.fixed_out
            else _misaligned(rng, out_bands[j], cfg.out_channels, 1 + (3 * j) % 7)
        )
        if one_dim:
            c_out = c_in = cfg.in_channels if (unit.fixed_in or unit.fixed_out) else c_in
        pairs.append((c_in, c_out))
    return pairs


def _spread(pairs: list[tuple[int, int]], fraction: float, rng: random.Random):
    """``ceil(fraction · n)`` of ``pairs``: one at random from each of that many contiguous,
    equal-sized runs of the list, so the sample spans its whole order."""
    k = math.ceil(fraction * len(pairs) - 1e-9)
    edges = [round(i * len(pairs) / k) for i in range(k + 1)] if k else [0]
    return [pairs[rng.randrange(lo, hi)] for lo, hi in itertools.pairwise(edges) if hi > lo]


def unit_variants(
    unit: LayerUnit, grid: GridConfig, rules: DeviceRules | None = None
) -> list[UnitConfig]:
    """The grid configurations of one unit, the unpruned one first.

    ``rules``: the device's probed rules; the staircase grid follows their blocked layout.
    With ``grid.sample_fraction < 1``, the (in, out) grid sorted by channel counts and the
    off-grid counts (in their residue order) are each thinned by :func:`_spread`, seeded
    by the unit: every range of counts and every alignment class keeps samples.
    """
    grid_pairs, off_pairs = _cross(unit, grid, rules), _off_grid(unit, grid, rules)
    if grid.sample_fraction < 1:
        rng = random.Random(zlib.crc32(f"sparse|{grid.seed}|{unit.config.key}".encode()))
        grid_pairs = _spread(sorted(grid_pairs), grid.sample_fraction, rng)
        off_pairs = _spread(off_pairs, grid.sample_fraction, rng)
    variants = [unit.config]
    for c_in, c_out in grid_pairs + off_pairs:
        v = with_channels(unit.config, c_in, c_out)
        if v != unit.config:
            variants.append(v)
    return variants


def grid_configs(
    units: Iterable[LayerUnit], grid: GridConfig, rules: DeviceRules | None = None
) -> list[UnitConfig]:
    """Deduplicated grid over ``units`` in first-seen order (unpruned configs first);
    ``rules`` as in :func:`unit_variants`."""
    units = list(units)
    seen: dict[str, UnitConfig] = {}
    for u in units:  # the configurations the model actually has come first
        seen.setdefault(u.config.key, u.config)
    for u in units:
        for v in unit_variants(u, grid, rules):
            seen.setdefault(v.key, v)
    return list(seen.values())
