"""Channel groups: the sets of layer channels that structured pruning must remove together.

Built on torch-pruning's ``DependencyGraph`` (traced with autograd on an example input):

* every output channel of a conv or linear layer belongs to exactly one group (attention
  ``qkv`` layers excepted, below);
* a group lists every layer whose channels change with it: the producing convs/linears
  (``"out"``), channel-wise layers on the way (BatchNorm, LayerNorm, ``"out"``), the
  consumers (next conv/linear, ``"in"``), and depthwise convs (``"out"`` and ``"in"``: their
  channel is both);
* residual adds and elementwise products merge the groups of all their operands (in a ResNet
  stage, the stem or shortcut projection and every block's last conv are one group);
  concatenation maps each operand's channels to its own slice of the consumer.

A group is identified by its **root**: the first member, in ``model.named_modules()``
order, that produces all of the group's channels (``"layer1.0.conv1"``). A group counts
**units** (``ChannelGroup.unit``, :mod:`ttmpd.pruning._units`): a unit is one channel,
except next to grouped convs (unit ``u`` = offset ``u`` in every conv group) and in
attention modules (timm's fused ``qkv`` and ``proj``, BERT's ``query``/``key``/``value`` and
output dense, :mod:`ttmpd.pruning._heads`), which give a ``"<module>#heads"`` group (unit =
head) and, when asked for, a ``"<module>#head_dims"`` group (unit = one dim of every head).
Ids are stable for a given architecture, so plans can be stored and re-applied.

A group is not prunable when its channels are model outputs (the classifier) or are tied to
the input image channels, when a user ``ignored`` one of its layers, when a LayerNorm
normalises them (a transformer's embedding width; allowed with
``GroupOptions(embedding=True)``), when they pass a channel shuffle, or when torch-pruning
could not resolve its coupling consistently (each channel of each member must map to one
root channel, and the groups must partition every layer's channels) or breaks the model
when pruning it (checked by trial pruning on a copy, :mod:`ttmpd.pruning._trial`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops

from .._device import module_device
from ..errors import InputError
from . import _attention
from ._attention import GroupOptions
from ._graph import (
    PRODUCERS,
    SHUFFLE_REASON,
    RawGroup,
    build_graph,
    read_group,
    reroot,
    unfollowed,
)
from ._heads import attention_groups
from ._records import SIDES, ChannelGroup, MemberSlice
from ._tpfix import (
    all_groups,
    channel_shuffles,
    concat_dim_is_channels,
    frozen_index_mapping,
    guarded_reshape_mapping,
    patch_concats,
    unmap,
)
from ._units import CONV_GROUPS, UnitLayout, grouped_conv_blocks

logger = logging.getLogger(__name__)

_NORMS = (nn.LayerNorm, nn.RMSNorm)


@dataclass
class _Analysis:
    """Groups plus what pruning them needs: the graph, roots and unit layouts."""

    graph: tp.DependencyGraph
    model: nn.Module
    groups: list[ChannelGroup]
    roots: dict[str, nn.Module]
    layouts: dict[str, UnitLayout] = field(default_factory=dict)
    patched_concats: list = field(default_factory=list)

    def by_id(self) -> dict[str, ChannelGroup]:
        return {g.id: g for g in self.groups}

    def root_indices(self, group_id: str, units: Sequence[int]) -> list[int]:
        """torch-pruning root indices standing for ``units`` of ``group_id`` now."""
        root = self.roots[group_id]
        layout = self.layouts.get(group_id, UnitLayout())
        return layout.root_indices(self.model, self.graph.get_out_channels(root), units)

    def pruning_group(self, group_id: str, units: Sequence[int]):
        """torch-pruning's group removing ``units`` of ``group_id`` (current model)."""
        patch_concats(self.graph, self.patched_concats)
        root = self.roots[group_id]
        pruner = self.graph.get_pruner_of_module(root)
        idxs = self.root_indices(group_id, units)
        with guarded_reshape_mapping():
            return self.graph.get_pruning_group(root, pruner.prune_out_channels, idxs)

    def prune(self, group_id: str, units: Sequence[int], check: bool = False) -> None:
        """Remove ``units`` of ``group_id`` from the model (and fix attention attributes).

        With ``check``, torch-pruning's own validity check must pass first (InputError)."""
        layout = self.layouts.get(group_id, UnitLayout())
        attention = self.model.get_submodule(layout.module) if layout.module else None
        old_dim = _attention.head_dim_of(attention) if attention is not None else 0
        group = self.pruning_group(group_id, units)
        if attention is not None:  # per-head parameters are pruned by after_pruning
            own = {id(p) for p in attention.parameters(recurse=False)}
            group._group = [it for it in group._group if id(it.dep.target.module) not in own]
        if check and not self.graph.check_pruning_group(group):
            raise InputError(f"torch-pruning refuses to prune group {group_id!r}")
        group.prune()
        if attention is not None:
            _attention.after_pruning(attention, layout.kind, units, old_dim)


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


def _as_inputs(example_input, model: nn.Module | None = None) -> tuple[torch.Tensor, ...]:
    """The example input as a tuple, on ``model``'s device when a model is given."""
    inputs = example_input if isinstance(example_input, tuple | list) else (example_input,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise InputError("example_input must be a tensor (or a tuple of tensors), e.g. (1,3,32,32)")
    if model is not None:
        device = module_device(model)
        inputs = [t.to(device) for t in inputs]
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


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, list | tuple):
        return [t for item in out for t in _flat(item)]
    return []


def _reason(model, raw: RawGroup, fixed, unresolved, ignored, order, options) -> str:
    outs = {sl.path for sl in raw.slices.values() if sl.side == "out"}
    if raw.failure:
        return raw.failure
    if raw.reaches_output or outs & fixed:
        return "its channels are model outputs or tied to the input channels"
    if raw.shuffled:
        return SHUFFLE_REASON
    norms = sorted(
        (p for p, _ in raw.slices if isinstance(model.get_submodule(p), _NORMS)),
        key=order.__getitem__,
    )
    if norms and not options.embedding:
        return (
            f"{norms[0]} normalises over these channels (an embedding width); prune them "
            "with GroupOptions(embedding=True)"
        )
    if outs & unresolved:
        bad = sorted(outs & unresolved, key=order.__getitem__)[0]
        return f"torch-pruning could not resolve the channel coupling of {bad}"
    if outs & ignored:
        return f"layer {sorted(outs & ignored, key=order.__getitem__)[0]} is ignored"
    for sl in raw.slices.values():
        if sl.side == "out" and len(set(sl.indices)) != raw.channels:
            return f"torch-pruning maps the channels of {sl.path} inconsistently"
    return ""


def _in_units(model: nn.Module, raw: RawGroup) -> tuple[int, dict, UnitLayout, str]:
    """Channels, slices and layout in units: conv-group offsets next to grouped convs."""
    modules = {p: model.get_submodule(p) for p, _ in raw.slices}
    blocks = grouped_conv_blocks(list(modules.values()))
    if blocks == 1:
        return raw.channels, raw.slices, UnitLayout(), ""
    grouped = [sl for sl in raw.slices.values() if grouped_conv_blocks([modules[sl.path]]) > 1]
    if raw.channels % blocks or any(sl.indices != sl.root_indices for sl in grouped):
        return (
            raw.channels,
            raw.slices,
            UnitLayout(),
            (
                f"its channels do not split into the {blocks} equal groups of grouped conv "
                f"{grouped[0].path}"
            ),
        )
    width = raw.channels // blocks
    slices = {k: replace(sl, root_indices=tuple(r % width for r in sl.root_indices))
              for k, sl in raw.slices.items()}  # fmt: skip
    return width, slices, UnitLayout(CONV_GROUPS, blocks=blocks), ""


def analyze(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    ignored: Iterable[str | nn.Module] | None = None,
    verify: bool = True,
    options: GroupOptions | None = None,
    outputs: bool = True,
) -> _Analysis:
    """Build the dependency graph of ``model`` and its channel groups (internal).

    With ``verify``, groups passing through ops torch-pruning may mishandle (reshapes,
    splits, slices, grouped convs, unknown ops) are trial-pruned on copies first. Without
    ``outputs`` the model outputs are known only from the graph (no unit extraction; for
    trials).
    """
    from ._trial import failing_trials

    options = options or GroupOptions()
    if not isinstance(options, GroupOptions):
        raise InputError(f"options must be a GroupOptions, got {type(options).__name__}")
    inputs = _as_inputs(example_input, model)
    ignored_paths = _resolve_ignored(model, ignored)
    with _traceable(model), guarded_reshape_mapping(), contextlib.ExitStack() as stack:
        graph = build_graph(model, inputs)
        patched = [
            n
            for n in graph.module2node.values()
            if n.type == ops.OPTYPE.CONCAT and n.module.offsets is None
        ]
        patched = [n for n in patched if concat_dim_is_channels(graph, n)]
        patch_concats(graph, patched)
        shuffles = channel_shuffles(graph)
        unmap(shuffles)
        stack.enter_context(frozen_index_mapping())  # nothing is pruned below
        raw_groups, failed = all_groups(graph, PRODUCERS)
        fixed = _fixed_out_paths(model, inputs) if outputs else set()
        names = {m: n for n, m in model.named_modules()}
        order = {n: i for i, n in enumerate(names.values())}
        sites = {s.qkv: s for s in _attention.find_attention(model)}
        parts = {p for site in sites.values() for p in site.parts}
        analysis = _Analysis(graph=graph, model=model, groups=[], roots={}, patched_concats=patched)
        coverage: dict[str, list[int]] = {}  # out-channel indices of each layer over all groups
        read = [unfollowed(graph, names[m], m, exc, shuffles) for m, exc in failed]
        for g in raw_groups:
            raw = read_group(graph, model, names, g, shuffles)
            if any(sl.side == "out" and sl.path in parts for sl in raw.slices.values()):
                continue  # replaced by the heads groups below
            reroot(graph, model, names, order, raw, g)
            for sl in raw.slices.values():
                counted = sl.side == "out" and sl.path not in parts
                if counted and graph.get_out_channels(model.get_submodule(sl.path)):
                    coverage.setdefault(sl.path, []).extend(sl.indices)
            read.append(raw)
        trials: dict[str, int] = {}
        for site in sites.values():
            site, found = attention_groups(graph, model, names, site, options)
            for group, layout in found:
                analysis.groups.append(group)
                analysis.roots[group.id] = model.get_submodule(site.qkv)
                analysis.layouts[group.id] = layout
                hit = sorted({*site.parts, site.proj} & ignored_paths, key=order.__getitem__)
                if hit and group.prunable:
                    why = f"layer {hit[0]} is ignored"
                    analysis.groups[-1] = replace(group, prunable=False, reason=why)
                elif group.prunable and group.channels > 1:
                    trials[group.id] = group.channels
    unresolved = set()
    for path, idxs in coverage.items():
        out = graph.get_out_channels(model.get_submodule(path))
        if sorted(idxs) != list(range(out)):
            unresolved.add(path)
    for raw in read:
        reason = _reason(model, raw, fixed, unresolved, ignored_paths, order, options)
        channels, slices, layout = raw.channels, raw.slices, UnitLayout()
        if not reason:
            channels, slices, layout, reason = _in_units(model, raw)
        members = tuple(sorted(slices, key=lambda m: (order[m[0]], SIDES.index(m[1]))))
        group = ChannelGroup(
            id=raw.root,
            channels=channels,
            members=members,
            prunable=not reason,
            reason=reason,
            slices=tuple(slices[m] for m in members),
            unit=layout.kind,
        )
        analysis.groups.append(group)
        analysis.roots[raw.root] = model.get_submodule(raw.root)
        analysis.layouts[raw.root] = layout
        if raw.risky and group.prunable and group.channels > 1:
            trials[group.id] = group.channels
    if verify and trials:
        failed = failing_trials(analysis, inputs, trials)
        analysis.groups = [
            replace(g, prunable=False, reason=failed[g.id]) if g.id in failed else g
            for g in analysis.groups
        ]
    analysis.groups.sort(key=lambda grp: (order[names[analysis.roots[grp.id]]], grp.id))
    ids = [grp.id for grp in analysis.groups]
    if len(set(ids)) != len(ids):  # cannot happen with a partition; guard the plan format
        raise InputError("torch-pruning produced two groups with the same root; unsupported model")
    return analysis


def channel_groups(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    ignored: Iterable[str | nn.Module] | None = None,
    options: GroupOptions | None = None,
) -> list[ChannelGroup]:
    """The channel groups of ``model`` (see the module docstring), in module order.

    ``example_input`` is a batch such as ``torch.randn(1, 3, 32, 32)``; the model runs in
    eval mode (its training flag and ``requires_grad`` flags are restored, BatchNorm
    statistics are untouched). ``ignored`` holds module paths (or modules) whose output
    channels must not be pruned; their groups are returned with ``prunable=False``.
    ``options`` (:class:`GroupOptions`) adds head-dim groups and makes embedding widths
    prunable.
    """
    return analyze(model, example_input, ignored, options=options).groups


__all__ = ["SIDES", "ChannelGroup", "GroupOptions", "MemberSlice", "analyze", "channel_groups"]
