"""Random channel-pruned variants: random per-group ratios around an overall target.

Used to produce many differently-shaped models (e.g. for fitting and checking the latency
predictor) with the same dependency-aware pruning as everything else:

1. draw ``u_g ~ Uniform(0, 1)`` per prunable group;
2. find the scale ``s`` (bisection) such that the ratios ``r_g = clip(s * u_g, 0, max_ratio_g)``
   remove ``target_ratio`` of all prunable channels (channel-weighted);
3. round each kept count ``c_g (1 - r_g)`` to an allowed value: at least ``min_channels``,
   a multiple of ``round_to`` (when given; a group narrower than ``round_to`` stays whole),
   never removing more than ``max_group_ratio``;
4. repair the rounding error greedily (one allowed step at a time, in random group order)
   until no step brings the overall ratio closer to the target;
5. in each group, remove the channels with the lowest L1 importance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ._groups import ChannelGroup, channel_groups
from ._importance import importance
from ._plan import PrunePlan, model_fingerprint, ratio_ok


def _allowed_keeps(channels: int, min_channels: int, round_to: int | None, max_ratio: float):
    """Sorted kept counts allowed for a group of ``channels``."""
    lowest = max(min_channels, math.ceil(channels * (1.0 - max_ratio) - 1e-9), 1)
    step = round_to or 1
    allowed = [k for k in range(step, channels + 1, step) if k >= lowest]
    if channels not in allowed:
        allowed.append(channels)
    return sorted(allowed)


def _scaled_ratios(u: np.ndarray, cap: np.ndarray, c: np.ndarray, target: float) -> np.ndarray:
    goal = target * c.sum()

    def removed(scale: float) -> float:
        return float((c * np.minimum(u * scale, cap)).sum())

    lo, hi = 0.0, 1.0
    while removed(hi) < goal and hi < 1e9:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if removed(mid) < goal else (lo, mid)
    return np.minimum(u * hi, cap)


def random_plan(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    groups: Sequence[ChannelGroup] | None,
    target_ratio: float,
    seed: int,
    round_to: int | None = None,
    min_channels: int = 1,
    max_group_ratio: float = 0.9,
) -> PrunePlan:
    """A plan removing about ``target_ratio`` of all prunable channels, randomly spread.

    ``groups`` are the model's :func:`channel_groups` (computed from ``example_input`` when
    None). Per-group ratios are random (module docstring) and clipped to
    ``[0, max_group_ratio]``; channels are removed by L1 magnitude. The result is
    deterministic for a given ``seed``. The achieved ratio is ``plan.removed_fraction``: the
    plan lists every prunable group, so it is the fraction of all prunable channels; it is
    within one rounding step of the target. ``target_ratio`` above what the caps allow
    raises InputError.
    """
    target = ratio_ok(target_ratio, "target_ratio")
    cap_ratio = ratio_ok(max_group_ratio, "max_group_ratio", upper=1.0 + 1e-12)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputError(f"seed must be an int, got {seed!r}")
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int)):
        raise InputError(f"round_to must be a positive int or None, got {round_to!r}")
    if round_to is not None and round_to < 1:
        raise InputError(f"round_to must be a positive int or None, got {round_to!r}")
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise InputError(f"min_channels must be an int >= 1, got {min_channels!r}")
    if groups is None:
        groups = channel_groups(model, example_input)
    prunable = [g for g in groups if g.prunable]
    if not prunable:
        raise InputError("the model has no prunable channel groups")
    c = np.array([g.channels for g in prunable], dtype=np.float64)
    allowed = [_allowed_keeps(g.channels, min_channels, round_to, cap_ratio) for g in prunable]
    cap = np.array([1.0 - a[0] / g.channels for a, g in zip(allowed, prunable, strict=True)])
    best = float((c * cap).sum() / c.sum())
    if target > best + 1e-9:
        raise InputError(
            f"target_ratio {target} is above the {best:.3f} these groups allow (max_group_ratio="
            f"{cap_ratio}, min_channels={min_channels}, round_to={round_to}); lower it"
        )
    rng = np.random.default_rng(int(seed))
    ratios = _scaled_ratios(rng.random(len(prunable)), cap, c, target)
    # index into each group's allowed kept counts, nearest to the continuous target
    pos = []
    for a, ch, r in zip(allowed, c, ratios, strict=True):
        want = ch * (1.0 - r)
        pos.append(int(np.argmin([abs(k - want) for k in a])))
    goal = target * c.sum()

    def removed_total() -> float:
        return float(sum(ch - a[p] for a, ch, p in zip(allowed, c, pos, strict=True)))

    improved = True
    while improved:
        improved = False
        diff = removed_total() - goal  # > 0: removing too much -> keep more
        for i in rng.permutation(len(prunable)):
            step = 1 if diff > 0 else -1  # diff > 0: too much removed, so keep more
            j = pos[i] + step
            if not 0 <= j < len(allowed[i]):
                continue
            new_diff = diff - (allowed[i][j] - allowed[i][pos[i]])
            if abs(new_diff) < abs(diff) - 1e-9:
                pos[i], diff, improved = j, new_diff, True
    keep, channels = {}, {}
    for g, a, p in zip(prunable, allowed, pos, strict=True):
        scores = importance("l1")(model, g)
        order = np.argsort(-scores, kind="stable")[: a[p]]
        keep[g.id] = tuple(sorted(int(i) for i in order))
        channels[g.id] = g.channels
    return PrunePlan(
        keep=keep,
        channels=channels,
        fingerprint=model_fingerprint(model),
        metadata={
            "generator": "random_plan",
            "target_ratio": target,
            "seed": int(seed),
            "round_to": round_to,
            "min_channels": min_channels,
            "max_group_ratio": cap_ratio,
        },
    )


__all__ = ["random_plan"]
