"""Attention heads and head dims as channel groups, read from torch-pruning's graph.

The group of one attention module (:mod:`._attention`) holds what torch-pruning prunes with
all of its heads: the q, k, v rows (``"out"``) and the output projection's columns
(``"in"``). A BERT-style module's projection sits outside it, so it is taken from the graph:
the one linear layer whose inputs are coupled with the heads. Anything else coupled with the
heads, or a coupling that does not map row ``h*D + d`` to column ``h*D + d``, makes the
group unprunable with a reason.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from ._attention import HEAD_DIMS, HEADS, AttentionSite, GroupOptions
from ._graph import handler_side
from ._records import ChannelGroup, MemberSlice
from ._units import UnitLayout


def _coupled(graph, model: nn.Module, names: dict, site: AttentionSite) -> dict:
    """What torch-pruning prunes with all heads of ``site``: ``(path, side) -> [(index,
    root index)]``; a parameter outside the module is keyed by its shape."""
    qkv = model.get_submodule(site.qkv)
    width = site.heads * site.head_dim
    found: dict[tuple[str, str], list[tuple[int, int]]] = {}
    group = graph.get_pruning_group(qkv, graph.get_pruner_of_module(qkv).prune_out_channels,
                                    list(range(width)))  # fmt: skip
    own = {id(p) for p in model.get_submodule(site.path).parameters(recurse=False)}
    for item in group.items:
        side, module = handler_side(graph, item.dep.handler), item.dep.target.module
        if isinstance(module, nn.Parameter) and id(module) not in own:
            found.setdefault((f"a parameter of shape {tuple(module.shape)}", "out"), [])
        elif side is not None and module in names:
            pairs = zip(item.idxs, item.root_idxs, strict=True)
            found.setdefault((names[module], side), []).extend((int(i), int(r)) for i, r in pairs)
    return found


def _with_proj(model: nn.Module, site: AttentionSite, found: dict) -> AttentionSite:
    """``site`` with its output projection: the one linear layer whose inputs torch-pruning
    couples with the heads (BERT's ``output.dense``), or a reason when there is none."""
    if site.proj:
        return site
    readers = sorted(path for path, side in found if side == "in"
                     and isinstance(model.get_submodule(path), nn.Linear))  # fmt: skip
    if len(readers) == 1:
        return replace(site, proj=readers[0])
    why = (
        f"{len(readers)} linear layers ({', '.join(readers)}) read its heads, not one projection"
        if readers
        else "no linear layer reads its heads (no output projection found)"
    )
    return replace(site, reason=site.reason or why)


def attention_groups(
    graph, model: nn.Module, names: dict, site: AttentionSite, options: GroupOptions
) -> tuple[AttentionSite, list[tuple[ChannelGroup, UnitLayout]]]:
    """The heads (and head-dim) groups of one attention module (:mod:`._attention`), and
    the site with its output projection found."""
    width = site.heads * site.head_dim
    found = _coupled(graph, model, names, site)
    site = _with_proj(model, site, found)
    expected = {
        (p, "out"): sorted((i, i % width) for i in range(model.get_submodule(p).out_features))
        for p in site.parts
    }
    if site.proj:
        expected[(site.proj, "in")] = [(i, i) for i in range(width)]
    reason = site.reason
    extra = sorted(set(found) - set(expected), key=lambda m: m[0])
    if not reason and extra:
        reason = f"torch-pruning couples {extra[0][0]} with the heads"
    elif not reason and any(sorted(set(found.get(k, []))) != v for k, v in expected.items()):
        reason = "torch-pruning maps its q, k, v rows differently from q, k, v stacked by head"
    kinds = [HEADS] + ([HEAD_DIMS] if options.head_dims else [])
    out = []
    for kind in kinds:
        why = reason or (site.dims_reason if kind == HEAD_DIMS else "")
        slices = tuple(
            MemberSlice(path, side, tuple(i for i, _ in pairs),
                        tuple(site.unit_of(r, kind) for _, r in pairs))
            for (path, side), pairs in expected.items()
        )  # fmt: skip
        record = ChannelGroup(
            id=site.group_id(kind),
            channels=site.units(kind),
            members=tuple(expected),
            prunable=not why,
            reason=f"attention {site.path}: {why}" if why else "",
            slices=slices,
            unit=kind,
        )
        out.append((record, UnitLayout(kind, module=site.path)))
    return site, out


__all__ = ["attention_groups"]
