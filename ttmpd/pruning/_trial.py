"""Trial pruning: which groups torch-pruning breaks the model on (checked on copies).

Torch-pruning's dependency graph does not model every layout constraint (chunks and splits
into equal parts, channel shuffles, unknown ops). A group passing such an op is pruned on
a deep copy twice, removing its first unit and its first half of units; it is kept only if
the pruned copy still runs and gives outputs of the same shapes.

All groups are tried together first; when that fails the set is split in halves and each
half tried (group testing), so ``f`` failing groups among ``n`` cost about
``2 f log2(n / f)`` trials instead of ``2 n``. Each trial deep-copies the model together
with its dependency graph (no new trace) and runs the pruned copy once.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import types
from collections.abc import Iterator, Mapping, Sequence

import torch

from ._attention import GroupOptions

logger = logging.getLogger(__name__)

TRIAL_REASON = (
    "torch-pruning breaks the model when pruning it (a split, reshape, slice or grouped conv "
    "it does not handle)"
)
#: deepcopy frames per dependency-graph node, a bound on the recursion a graph clone needs
FRAMES_PER_NODE = 10
#: every kind of group (options only gate what is offered to the user)
ALL_GROUPS = GroupOptions(head_dims=True, embedding=True)


def _clone(analysis):
    """A deep copy of ``analysis`` (model and dependency graph together): the copy's graph
    points at the copy's modules, so no trace is needed. Autograd nodes (read-only shape
    records) and torch-pruning's stateless pruner objects are shared, not copied."""
    graph = analysis.graph
    memo = {id(n.grad_fn): n.grad_fn for n in graph.module2node.values() if n.grad_fn is not None}
    for pruner in (*graph.REGISTERED_PRUNERS.values(), *graph.CUSTOMIZED_PRUNERS.values()):
        memo[id(pruner)] = pruner
    for value in vars(graph).values():  # the graph keeps a reference to a Python module
        if isinstance(value, types.ModuleType):
            memo[id(value)] = value
    # the graph's nodes link to their neighbours, so deepcopy recurses along chains of
    # nodes: EfficientNet-B0's graph (240 nodes) needs about 1,460 frames, over Python's
    # default limit of 1,000
    depth = FRAMES_PER_NODE * len(graph.module2node) + sys.getrecursionlimit()
    with _recursion_limit(depth):
        return copy.deepcopy(analysis, memo)


@contextlib.contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    """Python's recursion limit at least ``limit`` inside the block, restored after it."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def _works(analysis, inputs: tuple, shapes: list, cut: Mapping[str, Sequence[int]]) -> bool:
    from ._groups import _flat, _traceable

    trial = _clone(analysis)
    try:
        with _traceable(trial.model):
            for gid, units in cut.items():
                trial.prune(gid, units)
        with _traceable(trial.model), torch.no_grad():
            after = [tuple(t.shape) for t in _flat(trial.model(*inputs))]
    except Exception as exc:  # any failure means torch-pruning mis-handled the group
        logger.debug("trial pruning of %s failed: %s", sorted(cut), exc)
        return False
    return after == shapes


def failing_trials(analysis, inputs: tuple, groups: Mapping[str, int]) -> dict[str, str]:
    """Ids of the groups (id -> units) of ``analysis`` whose trial pruning breaks the
    model, with the reason."""
    from ._groups import _flat, _traceable

    with _traceable(analysis.model), torch.no_grad():
        shapes = [tuple(t.shape) for t in _flat(analysis.model(*inputs))]

    def passes(ids: Sequence[str]) -> bool:
        cuts = ({gid: [0] for gid in ids}, {gid: list(range(groups[gid] // 2)) for gid in ids})
        return all(_works(analysis, inputs, shapes, cut) for cut in cuts)

    def search(ids: list[str]) -> list[str]:
        if passes(ids):
            return []
        if len(ids) == 1:
            return ids
        half = len(ids) // 2
        return search(ids[:half]) + search(ids[half:])

    return {gid: TRIAL_REASON for gid in search(sorted(groups))}


__all__ = ["TRIAL_REASON", "failing_trials"]
