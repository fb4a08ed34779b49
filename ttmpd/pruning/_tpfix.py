"""Work-arounds for torch-pruning 1.6 dependency-graph gaps (internal)."""

from __future__ import annotations

import torch_pruning as tp
from torch_pruning.dependency import index_mapping, shape_infer


def concat_dim_is_channels(node) -> bool:
    dim = getattr(node.grad_fn, "_saved_dim", None)
    return dim == 1


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
