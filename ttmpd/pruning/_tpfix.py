"""Work-arounds for torch-pruning 1.6 dependency-graph gaps (internal)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch_pruning as tp
from torch_pruning import ops
from torch_pruning.dependency import index_mapping, shape_infer


def concat_dim_is_channels(graph: tp.DependencyGraph, node) -> bool:
    """Whether a concat joins channels (dim 1 of an NCHW tensor) rather than tokens.

    A ViT's class-token concat is also along dim 1, but of a (batch, tokens, features)
    tensor: its consumer then reads fewer features than the operands' widths add up to.
    """
    if getattr(node.grad_fn, "_saved_dim", None) != 1:
        return False
    chs = [shape_infer.infer_channels_between(graph, n, node) for n in node.inputs]
    out = shape_infer.infer_in_channels_recursively(graph, node, recursive_depth=[0])
    if out is None or any(c is None for c in chs) or not sum(chs):
        return True
    return out >= sum(chs) and out % sum(chs) == 0


@contextlib.contextmanager
def guarded_reshape_mapping() -> Iterator[None]:
    """Let torch-pruning skip reshapes it cannot map instead of failing.

    A channel shuffle (``view(n, g, c // g, h, w)``, transpose, ``view(n, c, h, w)``) makes
    torch-pruning 1.6 infer zero channels on one side of a reshape and divide by it. The
    reshape is then left unmapped and the groups through it are reported as not prunable
    (:func:`channel_shuffles`).
    """
    original = index_mapping.update_reshape_index_mapping

    def guarded(graph, node):
        with contextlib.suppress(ZeroDivisionError):
            original(graph, node)

    index_mapping.update_reshape_index_mapping = guarded
    try:
        yield
    finally:
        index_mapping.update_reshape_index_mapping = original


def _sizes(node) -> tuple | None:
    return getattr(node.grad_fn, "_saved_self_sym_sizes", None)


def channel_shuffles(graph: tp.DependencyGraph) -> set:
    """The nodes of channel shuffles: a reshape splitting the channels of an NCHW tensor
    into (groups, channels per group), a transpose or permute, a reshape merging them back.

    That is ShuffleNet's shuffle: it permutes channels across the operands of the concat
    before it, which torch-pruning has no index mapping for.
    """
    found: set = set()
    for merge in graph.module2node.values():
        if merge.type != ops.OPTYPE.RESHAPE or len(_sizes(merge) or ()) != 5:
            continue
        path, node, swapped = [merge], merge, False
        for _ in range(4):  # back through transpose/permute and copies to the split
            if len(node.inputs) != 1:
                break
            node = node.inputs[0]
            path.append(node)
            if node.type == ops.OPTYPE.RESHAPE:
                if swapped and len(_sizes(node) or ()) == 4:
                    found.update(path)
                break
            name = type(node.grad_fn).__name__
            swapped = swapped or name.startswith(("Transpose", "Permute"))
    return found


def patch_concats(graph: tp.DependencyGraph, nodes: list) -> None:
    """Install channel offsets on concatenations torch-pruning left unmapped.

    torch-pruning 1.6 skips a concat's index mapping when the concatenated tensor is later
    flattened (it then infers the consumer's width, e.g. 12*8*8, instead of 12), and the
    group of one operand silently swallows the other operand's first channels. We compute
    the operand widths from the current layers and install the same mappings it would have.
    Called before every group query because pruning changes the widths.
    """
    for node in nodes:
        chs = [shape_infer.infer_channels_between(graph, n, node) for n in node.inputs]
        if any(c is None for c in chs):
            continue
        offsets = [0]
        for c in chs:
            offsets.append(offsets[-1] + c)
        node.module.concat_sizes = list(chs)
        node.module.offsets = offsets
        done: list = []
        for i, in_node in enumerate(node.inputs):
            for dep in node.dependencies:
                if dep.target == in_node and not any(dep is d for d in done):
                    dep.index_mapping[1] = index_mapping._ConcatIndexMapping(
                        offset=offsets[i : i + 2], reverse=True
                    )
                    done.append(dep)
                    break
        done = []
        for i, in_node in enumerate(node.inputs):
            for dep in in_node.dependencies:
                if dep.target == node and not any(dep is d for d in done):
                    dep.index_mapping[1] = index_mapping._ConcatIndexMapping(
                        offset=offsets[i : i + 2], reverse=False
                    )
                    done.append(dep)
                    break


@contextlib.contextmanager
def frozen_index_mapping() -> Iterator[None]:
    """Skip torch-pruning's whole-graph index-mapping refresh on every group query.

    ``get_pruning_group`` recomputes every concat/split/reshape mapping of the graph (with
    recursive shape inference) before each query; while nothing is pruned the result is
    the same as after the build, so an analysis asking for hundreds of groups does it once.
    """
    original = index_mapping.update_index_mapping
    index_mapping.update_index_mapping = lambda graph: None
    try:
        yield
    finally:
        index_mapping.update_index_mapping = original


def all_groups(graph: tp.DependencyGraph, root_types: tuple) -> tuple[list, list]:
    """torch-pruning's ``get_all_groups``, but a root it cannot follow does not end it.

    Returns the groups and the ``(module, exception)`` pairs of the roots that failed
    (e.g. an index mapping broken by a channel shuffle upstream).
    """
    groups, failed, visited = [], [], set()
    for module in list(graph.module2node):
        if not isinstance(module, root_types) or module in visited:
            continue
        pruner = graph.get_pruner_of_module(module)
        if pruner is None or pruner.get_out_channels(module) is None:
            continue
        idxs = list(range(pruner.get_out_channels(module)))
        try:
            group = graph.get_pruning_group(module, pruner.prune_out_channels, idxs)
        except (IndexError, KeyError, ValueError, ZeroDivisionError) as exc:
            failed.append((module, exc))
            visited.add(module)
            continue
        for dep, _ in group:
            if graph.is_out_channel_pruning_fn(dep.handler):
                visited.add(dep.target.module)
        groups.append(group)
    return groups, failed


def unmap(nodes: set) -> None:
    """Drop the flatten index mappings torch-pruning guessed around ``nodes`` (channel
    shuffles): they multiply indices at every pass (millions of index objects) and are
    wrong anyway; the groups through those nodes are reported as not prunable."""
    for node in nodes:
        for dep in node.dependencies:
            dep.index_mapping[0] = None
        for other in (*node.inputs, *node.outputs):
            for dep in other.dependencies:
                if dep.target is node:
                    dep.index_mapping[0] = None
