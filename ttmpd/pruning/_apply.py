"""Applying a prune plan to a model with torch-pruning, after validating it."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..errors import InputError
from ._groups import ChannelGroup, _as_inputs, _flat, _traceable, analyze
from ._plan import PrunePlan, model_fingerprint
from ._trial import ALL_GROUPS

logger = logging.getLogger(__name__)


def _check_fingerprint(model: nn.Module, plan: PrunePlan) -> None:
    if not plan.fingerprint:  # made without the model: only group ids and counts are checked
        return
    have = dict(model_fingerprint(model))
    want = dict(plan.fingerprint)
    for path, shape in plan.fingerprint:
        if path not in have:
            raise InputError(
                f"the plan was made for another model: it has no layer {path!r}; apply it to "
                "the unpruned model it was made from"
            )
        if have[path] != shape:
            raise InputError(
                f"the plan was made for another model: {path} has weight shape "
                f"{tuple(have[path])} here but {shape} in the plan; apply it to the unpruned "
                "model it was made from"
            )
    extra = [p for p in have if p not in want]
    if extra:
        raise InputError(
            f"the plan was made for another model: layer {extra[0]!r} is not in the plan's "
            "fingerprint; apply it to the unpruned model it was made from"
        )


def _check_against_groups(plan: PrunePlan, groups: Mapping[str, ChannelGroup]) -> None:
    for gid, keep in plan.keep.items():
        if gid not in groups:
            valid = ", ".join(sorted(groups)[:8]) + (", ..." if len(groups) > 8 else "")
            raise InputError(
                f"unknown group id {gid!r} in the plan; use ids from channel_groups() "
                f"(this model has: {valid})"
            )
        group = groups[gid]
        if plan.channels[gid] != group.channels:
            raise InputError(
                f"plan group {gid!r} has {plan.channels[gid]} channels but the model's group has "
                f"{group.channels}; the plan was made for another model"
            )
        if not group.prunable and len(keep) != group.channels:
            raise InputError(
                f"group {gid!r} is not prunable ({group.reason}); keep all its channels or drop "
                "it from the plan"
            )


def apply_plan(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    plan: PrunePlan,
    inplace: bool = False,
) -> nn.Module:
    """Prune ``model`` (a deep copy unless ``inplace``) as ``plan`` says and return it.

    The plan is checked first (model fingerprint, group ids, channel counts, prunability;
    indices are checked when the plan is built); any problem raises
    :class:`~ttmpd.errors.InputError` naming it. Groups are pruned in id order with
    torch-pruning, which edits the modules in place, so module paths are unchanged. The
    pruned model is run once on ``example_input`` to check the output shape is unchanged.
    The training flag is preserved; BatchNorm statistics are not touched. If torch-pruning
    breaks the model (an architecture it mishandles), InputError is raised; with
    ``inplace=True`` the model may then be left partly pruned.
    """
    if not isinstance(plan, PrunePlan):
        raise InputError(f"plan must be a PrunePlan, got {type(plan).__name__}")
    inputs = _as_inputs(example_input, model)
    _check_fingerprint(model, plan)
    target = model if inplace else copy.deepcopy(model)
    with _traceable(target), torch.no_grad():
        before = target(*inputs)
    # every kind of group (head dims, embedding widths) a plan may hold; the run below
    # checks the result
    analysis = analyze(target, inputs, verify=False, options=ALL_GROUPS)
    _check_against_groups(plan, analysis.by_id())
    with _traceable(target):
        for gid in plan.keep:
            removed = plan.removed(gid)
            if removed:
                analysis.prune(gid, removed, check=True)
    with _traceable(target), torch.no_grad():
        try:
            after = target(*inputs)
        except RuntimeError as exc:
            raise InputError(
                f"the pruned model fails on the example input ({str(exc).splitlines()[0]}); "
                "torch-pruning mis-handles this architecture: pass the offending layers as "
                "ignored to channel_groups and rebuild the plan"
            ) from None
    shapes = [tuple(t.shape) for t in _flat(before)], [tuple(t.shape) for t in _flat(after)]
    if shapes[0] != shapes[1]:
        raise InputError(
            f"pruning changed the output shapes from {shapes[0]} to {shapes[1]}; the plan "
            "prunes output channels: keep the classifier's group whole"
        )
    return target


def plan_from_removed(
    groups: Iterable[ChannelGroup],
    removed: Mapping[str, Iterable[int]],
    model: nn.Module | None = None,
    metadata: Mapping | None = None,
) -> PrunePlan:
    """A plan removing ``removed[group_id]`` channel indices from each listed group.

    ``groups`` are the model's :func:`channel_groups`; ids not among them, indices out of
    range, duplicates, pruning a non-prunable group or removing every channel raise
    InputError. Pass the (unpruned) ``model`` to record its fingerprint; without it the plan
    has an empty fingerprint and :func:`apply_plan` can only check group ids and counts.
    """
    by_id = {g.id: g for g in groups}
    keep, channels = {}, {}
    for gid, idxs in removed.items():
        if gid not in by_id:
            raise InputError(f"unknown group id {gid!r}; use ids from channel_groups()")
        group = by_id[gid]
        idxs = [int(i) for i in idxs]
        if len(set(idxs)) != len(idxs):
            raise InputError(f"group {gid!r}: a channel is listed twice in the removed indices")
        bad = [i for i in idxs if not 0 <= i < group.channels]
        if bad:
            raise InputError(
                f"group {gid!r}: channel index {bad[0]} is out of range for {group.channels} "
                f"channels; use indices 0..{group.channels - 1}"
            )
        if idxs and not group.prunable:
            raise InputError(f"group {gid!r} is not prunable ({group.reason})")
        gone = set(idxs)
        keep[gid] = tuple(i for i in range(group.channels) if i not in gone)
        channels[gid] = group.channels
        if not keep[gid]:
            raise InputError(f"group {gid!r}: removing all {group.channels} channels; keep >= 1")
    return PrunePlan(
        keep=keep,
        channels=channels,
        fingerprint=model_fingerprint(model) if model is not None else (),
        metadata=dict(metadata or {}),
    )


__all__ = ["apply_plan", "plan_from_removed"]
