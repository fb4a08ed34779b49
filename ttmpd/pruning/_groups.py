"""Channel groups: the sets of layer channels that structured pruning must remove together.

Built on torch-pruning's ``DependencyGraph`` (traced with autograd on an example input):

* every output channel of a conv or linear layer belongs to exactly one group;
* a group lists every layer whose channels change with it: the producing convs/linears
  (``"out"``), channel-wise layers on the way (BatchNorm, ``"out"``), the consumers
  (next conv/linear, ``"in"``), and depthwise convs (``"out"`` and ``"in"``: their channel is
  both);
* residual adds and elementwise products merge the groups of all their operands (in a ResNet
  stage, the stem or shortcut projection and every block's last conv are one group);
  concatenation maps each operand's channels to its own slice of the consumer.

A group is identified by its **root**: the first member, in ``model.named_modules()``
order, that produces all of the group's channels (``"layer1.0.conv1"``). Channel ``i`` of a
group is output channel ``i`` of its root. Ids are stable for a given architecture, so
plans can be stored and re-applied.

A group is not prunable when its channels are model outputs (the classifier) or are tied to
the input image channels, when a user ``ignored`` one of its layers, or when torch-pruning
could not resolve its coupling consistently (each channel of each member must map to one
root channel, and the groups must partition every layer's channels).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops

from ..errors import InputError
from ._tpfix import concat_dim_is_channels, patch_concats

logger = logging.getLogger(__name__)

SIDES = ("out", "in")
_PRODUCERS = (ops.TORCH_CONV, ops.TORCH_LINEAR)
_RISKY_TYPES = frozenset(
    {
        ops.OPTYPE.SPLIT,
        ops.OPTYPE.UNBIND,
        ops.OPTYPE.RESHAPE,
        ops.OPTYPE.EXPAND,
        ops.OPTYPE.SLICE,
        ops.OPTYPE.CUSTOMIZED,
    }
)
_TRIAL_REASON = (
    "torch-pruning breaks the model when pruning it (a split, reshape, slice or grouped conv "
    "it does not handle)"
)


@dataclass(frozen=True)
class MemberSlice:
    """Where a group's channels sit in one member: ``indices[k]`` along the member's
    channel dimension belongs to root channel ``root_indices[k]`` (a flatten before a linear
    maps one channel to several input features)."""

    path: str
    side: str
    indices: tuple[int, ...]
    root_indices: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that are pruned together.

    ``id`` is the root module path, ``channels`` the current channel count, ``members`` the
    sorted ``(module_path, "out"|"in")`` pairs whose channels change with the group.
    ``prunable`` is False for model outputs, input-coupled, ignored or unresolved groups;
    ``reason`` then says why. ``slices`` (not compared) hold the index maps per member.
    """

    id: str
    channels: int
    members: tuple[tuple[str, str], ...]
    prunable: bool
    reason: str = ""
    slices: tuple[MemberSlice, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise InputError(f"group id must be a non-empty module path, got {self.id!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int):
            raise InputError(f"group {self.id}: channels must be an int, got {self.channels!r}")
        if self.channels < 1:
            raise InputError(f"group {self.id}: channels must be >= 1, got {self.channels}")
        for member in self.members:
            if len(member) != 2 or member[1] not in SIDES:
                raise InputError(f"group {self.id}: bad member {member!r}; use (path, 'out'|'in')")
        if self.prunable == bool(self.reason):
            raise InputError(f"group {self.id}: give a reason exactly when it is not prunable")

    def paths(self, side: str | None = None) -> tuple[str, ...]:
        """Member module paths, optionally only those on ``side`` ("out" or "in")."""
        return tuple(p for p, s in self.members if side is None or s == side)


@dataclass
class _Analysis:
    """Groups plus what pruning them needs: the graph and each group's root module."""

    graph: tp.DependencyGraph
    groups: list[ChannelGroup]
    roots: dict[str, nn.Module]
    patched_concats: list = field(default_factory=list)

    def by_id(self) -> dict[str, ChannelGroup]:
        return {g.id: g for g in self.groups}

    def pruning_group(self, group_id: str, idxs: Sequence[int]):
        """torch-pruning's group removing root channels ``idxs`` of ``group_id`` (current model)."""
        patch_concats(self.graph, self.patched_concats)
        root = self.roots[group_id]
        pruner = self.graph.get_pruner_of_module(root)
        return self.graph.get_pruning_group(root, pruner.prune_out_channels, list(idxs))


@contextlib.contextmanager
def _traceable(model: nn.Module) -> Iterator[None]:
    """Eval mode (no BN statistics change), grads on, params requiring grad; all restored."""
    was_training = model.training
    frozen = [p for p in model.parameters() if not p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(True)
        model.eval()
        with torch.enable_grad():
            yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
        model.train(was_training)


def _as_inputs(example_input) -> tuple[torch.Tensor, ...]:
    inputs = example_input if isinstance(example_input, tuple | list) else (example_input,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise InputError("example_input must be a tensor (or a tuple of tensors), e.g. (1,3,32,32)")
    return tuple(inputs)


def _resolve_ignored(model: nn.Module, ignored: Iterable[str | nn.Module] | None) -> set[str]:
    names = {m: n for n, m in model.named_modules()}
    paths: set[str] = set()
    for item in ignored or ():
        if isinstance(item, nn.Module):
            if item not in names:
                raise InputError(f"ignored layer {type(item).__name__} is not part of the model")
            paths.add(names[item])
        elif isinstance(item, str):
            if item not in dict(model.named_modules()):
                raise InputError(
                    f"ignored layer {item!r} is not a module path of the model; "
                    "use names from model.named_modules()"
                )
            paths.add(item)
        else:
            raise InputError(f"ignored must hold module paths or modules, got {item!r}")
    return paths


def _fixed_out_paths(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> set[str]:
    """Module paths whose output channels are fixed (model outputs, tied to input channels)."""
    from ..profiler import extract_units

    try:
        extraction = extract_units(model, inputs)
    except InputError:
        raise
    except Exception as exc:  # an exotic op the extractor cannot record: rely on the graph
        logger.debug("unit extraction failed (%s); using the dependency graph only", exc)
        return set()
    return {u.name.split("#")[0] for u in extraction.units if u.fixed_out}


def _side(graph: tp.DependencyGraph, handler) -> str | None:
    if graph.is_out_channel_pruning_fn(handler):
        return "out"
    if graph.is_in_channel_pruning_fn(handler):
        return "in"
    return None


def _is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups == module.out_channels
        and module.groups == module.in_channels
        and module.groups > 1
    )


def _same_group(graph, model: nn.Module, names: dict, path: str, group) -> bool:
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


def _risky(node) -> bool:
    """Nodes whose channel handling torch-pruning may get wrong: verify by trial pruning."""
    if node.type in _RISKY_TYPES:
        return True
    module = node.module
    if node.type == ops.OPTYPE.ELEMENTWISE and "Unknown" in str(module):
        return True
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and not _is_depthwise(module)
    )


def _failing_trials(model: nn.Module, inputs: tuple, groups: dict[str, int]) -> set[str]:
    """Ids of groups (id -> channels) whose trial pruning breaks the model (on copies).

    Two trials per group: remove one channel, and remove the first half. They catch
    divisibility and layout constraints (chunks, splits, channel shuffles, grouped convs)
    torch-pruning does not model. All groups are tried together first; only if that fails
    is each one tried alone.
    """

    def works(cut: dict[str, list[int]]) -> bool:
        trial = copy.deepcopy(model)
        with _traceable(trial), torch.no_grad():
            before = [tuple(t.shape) for t in _flat(trial(*inputs))]
        analysis = analyze(trial, inputs, verify=False)
        try:
            with _traceable(trial):
                for gid, idxs in cut.items():
                    analysis.pruning_group(gid, idxs).prune()
            with _traceable(trial), torch.no_grad():
                after = [tuple(t.shape) for t in _flat(trial(*inputs))]
        except Exception as exc:  # any failure means torch-pruning mis-handled the group
            logger.debug("trial pruning of %s failed: %s", sorted(cut), exc)
            return False
        return after == before

    def cuts(ids) -> list[dict[str, list[int]]]:
        return [
            {gid: [0] for gid in ids},
            {gid: list(range(groups[gid] // 2)) for gid in ids},
        ]

    if not groups or all(works(c) for c in cuts(groups)):
        return set()
    return {gid for gid in groups if not all(works(c) for c in cuts([gid]))}


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, list | tuple):
        return [t for item in out for t in _flat(item)]
    return []


def analyze(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    ignored: Iterable[str | nn.Module] | None = None,
    verify: bool = True,
) -> _Analysis:
    """Build the dependency graph of ``model`` and its channel groups (internal).

    With ``verify``, groups passing through ops torch-pruning may mishandle (reshapes,
    splits, slices, grouped convs, unknown ops) are trial-pruned on a copy first.
    """
    inputs = _as_inputs(example_input)
    ignored_paths = _resolve_ignored(model, ignored)
    with _traceable(model):
        try:
            graph = tp.DependencyGraph().build_dependency(model, inputs, verbose=False)
        except Exception as exc:
            raise InputError(
                f"torch-pruning cannot trace this model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); check the example input shape"
            ) from None
        patched = [
            n
            for n in graph.module2node.values()
            if n.type == ops.OPTYPE.CONCAT and n.module.offsets is None
        ]
        patched = [n for n in patched if concat_dim_is_channels(n)]
        patch_concats(graph, patched)
        raw = list(graph.get_all_groups(root_module_types=(ops.TORCH_CONV, ops.TORCH_LINEAR)))
    fixed = _fixed_out_paths(model, inputs)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    analysis = _Analysis(graph=graph, groups=[], roots={}, patched_concats=patched)
    coverage: dict[str, list[int]] = {}  # out-channel indices of each layer over all groups
    built = []
    for g in raw:
        slices: dict[tuple[str, str], MemberSlice] = {}
        reaches_output = risky = False
        for item in g.items:
            node = item.dep.target
            risky = risky or _risky(node)
            side = _side(graph, item.dep.handler)
            if node.type == ops.OPTYPE.OUTPUT or (side == "out" and not node.outputs):
                reaches_output = True
            module = node.module
            if side is None or module not in names:
                continue
            path = names[module]
            idxs = tuple(int(i) for i in item.idxs)
            root_idxs = tuple(int(i) for i in item.root_idxs)
            sides = ("out", "in") if _is_depthwise(module) else (side,)
            for s in sides:
                old = slices.get((path, s))
                if old is not None:  # reached twice (e.g. via two paths): merge
                    pairs = dict(zip(old.indices, old.root_indices, strict=True))
                    pairs.update(zip(idxs, root_idxs, strict=True))
                    idxs_s, root_s = tuple(pairs), tuple(pairs.values())
                else:
                    idxs_s, root_s = idxs, root_idxs
                slices[(path, s)] = MemberSlice(path, s, idxs_s, root_s)
        channels = len(g[0].idxs)
        producers = [
            sl
            for sl in slices.values()
            if sl.side == "out" and isinstance(model.get_submodule(sl.path), _PRODUCERS)
        ]
        root_path = names[g[0].dep.target.module]
        full = [
            sl.path
            for sl in producers
            if sl.indices == sl.root_indices and sorted(sl.indices) == list(range(channels))
            and graph.get_out_channels(model.get_submodule(sl.path)) == channels
        ]  # fmt: skip
        if full:
            candidate = min(full, key=order.__getitem__)
            if candidate != root_path and _same_group(graph, model, names, candidate, g):
                root_path = candidate
        for sl in slices.values():
            if sl.side == "out" and graph.get_out_channels(model.get_submodule(sl.path)):
                coverage.setdefault(sl.path, []).extend(sl.indices)
        built.append((root_path, channels, slices, reaches_output, risky))

    unresolved = set()
    for path, idxs in coverage.items():
        out = graph.get_out_channels(model.get_submodule(path))
        if sorted(idxs) != list(range(out)):
            unresolved.add(path)
    trials: dict[str, int] = {}
    for root_path, channels, slices, reaches_output, risky in built:
        members = tuple(sorted(slices, key=lambda m: (order[m[0]], SIDES.index(m[1]))))
        outs = {p for p, s in members if s == "out"}
        reason = ""
        if reaches_output or outs & fixed:
            reason = "its channels are model outputs or tied to the input channels"
        elif outs & unresolved:
            bad = sorted(outs & unresolved, key=order.__getitem__)[0]
            reason = f"torch-pruning could not resolve the channel coupling of {bad}"
        elif outs & ignored_paths:
            bad = sorted(outs & ignored_paths, key=order.__getitem__)[0]
            reason = f"layer {bad} is ignored"
        else:
            for sl in slices.values():
                if sl.side == "out" and len(set(sl.indices)) != channels:
                    reason = f"torch-pruning maps the channels of {sl.path} inconsistently"
                    break
        group = ChannelGroup(
            id=root_path,
            channels=channels,
            members=members,
            prunable=not reason,
            reason=reason,
            slices=tuple(slices[m] for m in members),
        )
        analysis.groups.append(group)
        analysis.roots[root_path] = model.get_submodule(root_path)
        if risky and group.prunable and group.channels > 1:
            trials[group.id] = group.channels
    if verify and trials:
        failed = _failing_trials(model, inputs, trials)
        analysis.groups = [
            replace(g, prunable=False, reason=_TRIAL_REASON) if g.id in failed else g
            for g in analysis.groups
        ]
    analysis.groups.sort(key=lambda grp: order[grp.id])
    ids = [grp.id for grp in analysis.groups]
    if len(set(ids)) != len(ids):  # cannot happen with a partition; guard the plan format
        raise InputError("torch-pruning produced two groups with the same root; unsupported model")
    return analysis


def channel_groups(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    ignored: Iterable[str | nn.Module] | None = None,
) -> list[ChannelGroup]:
    """The channel groups of ``model`` (see the module docstring), in module order.

    ``example_input`` is a batch such as ``torch.randn(1, 3, 32, 32)``; the model runs once
    in eval mode (its training flag and ``requires_grad`` flags are restored, BatchNorm
    statistics are untouched). ``ignored`` holds module paths (or modules) whose output
    channels must not be pruned; their groups are returned with ``prunable=False``.
    """
    return analyze(model, example_input, ignored).groups


__all__ = ["SIDES", "ChannelGroup", "MemberSlice", "analyze", "channel_groups"]
