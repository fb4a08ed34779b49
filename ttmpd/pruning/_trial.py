"""Trial pruning: which groups torch-pruning breaks the model on (checked on copies).

Torch-pruning's dependency graph does not model every layout constraint (chunks and splits
into equal parts, channel shuffles, unknown ops). A group passing such an op is pruned on
a deep copy twice, removing its first unit and its first half of units; it is kept only if
the pruned copy still runs and gives outputs of the same shapes.

All groups are tried together first; when that fails the set is split in halves and each
half tried (group testing), so ``f`` failing groups among ``n`` cost about
``2 f log2(n / f)`` trials instead of ``2 n``. Each trial deep-copies the model and
rebuilds only the dependency graph (no unit extraction).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ._attention import GroupOptions

logger = logging.getLogger(__name__)

TRIAL_REASON = (
    "torch-pruning breaks the model when pruning it (a split, reshape, slice or grouped conv "
    "it does not handle)"
)
#: trials prune with every kind of group available (options only gate what is offered)
ALL_GROUPS = GroupOptions(head_dims=True, embedding=True)


def _works(model: nn.Module, inputs: tuple, cut: Mapping[str, Sequence[int]]) -> bool:
    from ._groups import _flat, _traceable, analyze

    trial = copy.deepcopy(model)
    with _traceable(trial), torch.no_grad():
        before = [tuple(t.shape) for t in _flat(trial(*inputs))]
    analysis = analyze(trial, inputs, verify=False, options=ALL_GROUPS, outputs=False)
    try:
        with _traceable(trial):
            for gid, units in cut.items():
                analysis.prune(gid, units)
        with _traceable(trial), torch.no_grad():
            after = [tuple(t.shape) for t in _flat(trial(*inputs))]
    except Exception as exc:  # any failure means torch-pruning mis-handled the group
        logger.debug("trial pruning of %s failed: %s", sorted(cut), exc)
        return False
    return after == before


def failing_trials(model: nn.Module, inputs: tuple, groups: Mapping[str, int]) -> dict[str, str]:
    """Ids of the groups (id -> units) whose trial pruning breaks the model, with the reason."""

    def passes(ids: Sequence[str]) -> bool:
        cuts = ({gid: [0] for gid in ids}, {gid: list(range(groups[gid] // 2)) for gid in ids})
        return all(_works(model, inputs, cut) for cut in cuts)

    def search(ids: list[str]) -> list[str]:
        if passes(ids):
            return []
        if len(ids) == 1:
            return ids
        half = len(ids) // 2
        return search(ids[:half]) + search(ids[half:])

    return {gid: TRIAL_REASON for gid in search(sorted(groups))}


__all__ = ["TRIAL_REASON", "failing_trials"]
