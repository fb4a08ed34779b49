"""Reading torch-pruning's dependency graph into member slices (internal to _groups).

A torch-pruning group is a list of (dependency, indices) items; :func:`read_group` keeps the
items on modules (conv, linear, norms) as :class:`~ttmpd.pruning.MemberSlice` records and
notes what makes the group suspect: ops torch-pruning may mishandle (``risky``), a channel
shuffle on the way, the model output.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops

from ..errors import InputError
from ._records import MemberSlice
from ._tpfix import guarded_reshape_mapping

PRODUCERS = (ops.TORCH_CONV, ops.TORCH_LINEAR)
RISKY_TYPES = frozenset(
    {
        ops.OPTYPE.SPLIT,
        ops.OPTYPE.UNBIND,
        ops.OPTYPE.RESHAPE,
        ops.OPTYPE.EXPAND,
        ops.OPTYPE.SLICE,
        ops.OPTYPE.CUSTOMIZED,
    }
)
SHUFFLE_REASON = (
    "its channels pass a channel shuffle (view, transpose, view), which permutes them "
    "across the concatenated branches; torch-pruning has no index mapping for it"
)


def handler_side(graph: tp.DependencyGraph, handler) -> str | None:
    if graph.is_out_channel_pruning_fn(handler):
        return "out"
    if graph.is_in_channel_pruning_fn(handler):
        return "in"
    return None


def is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups == module.out_channels
        and module.groups == module.in_channels
        and module.groups > 1
    )


def same_group(graph, model: nn.Module, names: dict, path: str, group) -> bool:
    """Whether rooting at ``path`` yields the same (module, handler, indices) as ``group``."""
    module = model.get_submodule(path)
    pruner = graph.get_pruner_of_module(module)
    n = len(group[0].idxs)
    other = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(n)))

    def key(g):
        return {
            (id(it.dep.target.module), it.dep.handler, tuple(sorted(int(i) for i in it.idxs)))
            for it in g.items
        }

    return key(other) == key(group)


def risky_node(node) -> bool:
    """Nodes whose channel handling torch-pruning may get wrong: verify by trial pruning."""
    if node.type in RISKY_TYPES:
        return True
    module = node.module
    if node.type == ops.OPTYPE.ELEMENTWISE and "Unknown" in str(module):
        return True
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and not is_depthwise(module)
    )


def build_graph(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tp.DependencyGraph:
    with guarded_reshape_mapping(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters")
        try:
            return tp.DependencyGraph().build_dependency(model, inputs, verbose=False)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            hint = (
                "check the example input shape"
                if isinstance(exc, RuntimeError)
                else "the model uses an op torch-pruning does not support"
            )
            raise InputError(
                f"torch-pruning cannot trace this model ({type(exc).__name__}: {first}); {hint}"
            ) from None


@dataclass
class RawGroup:
    """One torch-pruning group read into member slices (before units and reasons)."""

    root: str
    channels: int
    slices: dict[tuple[str, str], MemberSlice]
    reaches_output: bool = False
    risky: bool = False
    shuffled: bool = False
    failure: str = ""


def reaches(graph, module: nn.Module, targets: set) -> bool:
    """Whether ``module``'s output channels meet a node of ``targets`` before the next
    conv/linear (for a depthwise conv, also its input channels, upstream)."""
    node = graph.module2node[module]
    todo = [(n, "outputs") for n in node.outputs]
    if is_depthwise(module):
        todo += [(n, "inputs") for n in node.inputs]
    seen = set()
    while todo:
        node, way = todo.pop()
        if node in targets:
            return True
        if node in seen or isinstance(node.module, PRODUCERS):
            continue
        seen.add(node)
        todo.extend((n, way) for n in getattr(node, way))
    return False


def unfollowed(graph, path: str, module: nn.Module, exc: Exception, shuffles: set) -> RawGroup:
    """A root torch-pruning fails to follow: a group of its own, not prunable."""
    channels = graph.get_out_channels(module)
    every = MemberSlice(path, "out", tuple(range(channels)), tuple(range(channels)))
    raw = RawGroup(root=path, channels=channels, slices={(path, "out"): every})
    first = str(exc).splitlines()[0] if str(exc) else ""
    raw.failure = f"torch-pruning fails to follow its channels ({type(exc).__name__}: {first})"
    if reaches(graph, module, shuffles):
        raw.failure = f"{SHUFFLE_REASON}; {raw.failure}"
    return raw


def read_group(graph, model: nn.Module, names: dict, g, shuffles: set) -> RawGroup:
    slices: dict[tuple[str, str], MemberSlice] = {}
    raw = RawGroup(root=names[g[0].dep.target.module], channels=len(g[0].idxs), slices=slices)
    for item in g.items:
        node = item.dep.target
        raw.risky = raw.risky or risky_node(node)
        raw.shuffled = raw.shuffled or node in shuffles
        side = handler_side(graph, item.dep.handler)
        if node.type == ops.OPTYPE.OUTPUT or (side == "out" and not node.outputs):
            raw.reaches_output = True
        module = node.module
        if side is None or module not in names:
            continue
        path = names[module]
        idxs = tuple(int(i) for i in item.idxs)
        root_idxs = tuple(int(i) for i in item.root_idxs)
        for s in ("out", "in") if is_depthwise(module) else (side,):
            old = slices.get((path, s))
            if old is not None:  # reached twice (e.g. via two paths): merge
                pairs = dict(zip(old.indices, old.root_indices, strict=True))
                pairs.update(zip(idxs, root_idxs, strict=True))
                idxs_s, root_s = tuple(pairs), tuple(pairs.values())
            else:
                idxs_s, root_s = idxs, root_idxs
            slices[(path, s)] = MemberSlice(path, s, idxs_s, root_s)
    return raw


def reroot(graph, model: nn.Module, names: dict, order: dict, raw: RawGroup, g) -> None:
    """Root the group at its first full producer in module order (see module docstring)."""
    full = [
        sl.path
        for sl in raw.slices.values()
        if sl.side == "out" and isinstance(model.get_submodule(sl.path), PRODUCERS)
        and sl.indices == sl.root_indices and sorted(sl.indices) == list(range(raw.channels))
        and graph.get_out_channels(model.get_submodule(sl.path)) == raw.channels
    ]  # fmt: skip
    if full:
        candidate = min(full, key=order.__getitem__)
        if candidate != raw.root and same_group(graph, model, names, candidate, g):
            raw.root = candidate


__all__ = [
    "PRODUCERS",
    "SHUFFLE_REASON",
    "RawGroup",
    "build_graph",
    "handler_side",
    "is_depthwise",
    "read_group",
    "reroot",
    "unfollowed",
]
