"""Attention heads and head dims as pruning units (timm-style attention modules).

An attention module is recognised by its attributes: ``qkv`` (an ``nn.Linear`` producing q,
k and v stacked, output row ``p*H*D + h*D + d`` for part ``p`` in q, k, v, head ``h`` and
dim ``d``), ``proj`` (an ``nn.Linear`` reading the ``H*D`` head outputs, column
``h*D + d``) and ``num_heads`` (``H``); ``D`` is ``head_dim`` when the module has it, else
``qkv.out_features // (3 H)``. timm's ViT/DeiT ``Attention`` and Swin's
``WindowAttention`` have this shape. Torch-Pruning's dependency graph couples row
``p*H*D + r`` of ``qkv`` with column ``r`` of ``proj`` (root index ``r``); these units group
those root indices:

* **head** ``h``: root indices ``h*D .. h*D + D - 1``. Pruning heads lowers ``num_heads``;
  per-head parameters (Swin's ``relative_position_bias_table``, last dim ``H``) lose the
  same columns. The output equals the unpruned model with those heads' qkv rows zeroed.
* **head dim** ``d`` (opt in, ``GroupOptions(head_dims=True)``): root indices ``h*D + d``
  for every head. Pruning lowers ``head_dim``; the attention logits ``q.k * scale`` must
  not change, but timm's fused path scales by ``1/sqrt(D')`` of the pruned dim, so the kept
  q rows are multiplied by ``sqrt(D'/D)`` and ``scale`` is set to ``D'**-0.5`` (both paths
  then compute the logits of the original ``1/sqrt(D)``). Not offered when a ``q_norm``/
  ``k_norm`` normalises over the head dim.

Modules whose head layout reaches other layers (a gate, a norm over ``H*D``) are reported
with a reason instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

HEADS = "heads"
HEAD_DIMS = "head_dims"
#: per-head parameters pruned with the heads: attribute name -> the dim holding heads
PER_HEAD_PARAMS = {"relative_position_bias_table": -1}


@dataclass(frozen=True)
class GroupOptions:
    """What :func:`~ttmpd.pruning.channel_groups` may offer beyond plain channels.

    ``head_dims``: also a group per attention module whose units are head dims (all heads
    lose the same dims). ``embedding``: groups whose channels a LayerNorm normalises (a
    transformer's residual/embedding width, ConvNeXt's block width) are prunable; off by
    default because the norm's statistics then change, so the pruned model is not the
    masked one.
    """

    head_dims: bool = False
    embedding: bool = False


@dataclass(frozen=True)
class AttentionSite:
    """One attention module: paths, head count ``heads`` (H) and ``head_dim`` (D).

    ``reason`` says why its heads cannot be pruned ("" when they can); ``dims_reason`` the
    same for head dims."""

    path: str
    qkv: str
    proj: str
    heads: int
    head_dim: int
    reason: str = ""
    dims_reason: str = ""

    def group_id(self, kind: str) -> str:
        return f"{self.path}#{kind}"

    def units(self, kind: str) -> int:
        return self.heads if kind == HEADS else self.head_dim

    def unit_of(self, root: int, kind: str) -> int:
        """The unit (head or head dim) of root index ``root`` in ``[0, H*D)``."""
        return root // self.head_dim if kind == HEADS else root % self.head_dim


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def head_dim_of(module: nn.Module) -> int | None:
    """``D``: the module's ``head_dim``, else qkv rows over ``3 H`` (None if uneven)."""
    heads = module.num_heads
    if isinstance(getattr(module, "head_dim", None), int):
        return module.head_dim
    rows = module.qkv.out_features
    return rows // (3 * heads) if rows % (3 * heads) == 0 else None


def _unsupported(module: nn.Module, heads: int) -> str:
    """Why the head layout reaches layers other than qkv and proj ("" if it does not)."""
    if getattr(module, "gate", None) is not None:
        return "a gate layer multiplies the head outputs"
    norm = getattr(module, "norm", None)
    if isinstance(norm, nn.Module) and not isinstance(norm, nn.Identity):
        return "a norm layer normalises over all heads"
    for name, param in module.named_parameters(recurse=False):
        dim = PER_HEAD_PARAMS.get(name)
        if dim is None or param.shape[dim] != heads:
            return f"its parameter {name!r} has a layout head pruning does not know"
    return ""


def find_attention(model: nn.Module) -> list[AttentionSite]:
    """The attention modules of ``model`` (module docstring), in module order."""
    sites = []
    for path, module in model.named_modules():
        qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
        heads = getattr(module, "num_heads", None)
        if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear)):
            continue
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            continue
        dim = head_dim_of(module)
        if dim is None or qkv.out_features != 3 * heads * dim or proj.in_features != heads * dim:
            continue
        norms = [getattr(module, n, None) for n in ("q_norm", "k_norm")]
        dims_reason = ""
        if any(isinstance(n, nn.Module) and not isinstance(n, nn.Identity) for n in norms):
            dims_reason = "q_norm/k_norm normalise over the head dim"
        sites.append(
            AttentionSite(
                path=path,
                qkv=_join(path, "qkv"),
                proj=_join(path, "proj"),
                heads=heads,
                head_dim=dim,
                reason=_unsupported(module, heads),
                dims_reason=dims_reason,
            )
        )
    return sites


def root_indices(module: nn.Module, kind: str, units: Sequence[int]) -> list[int]:
    """Torch-Pruning root indices (of ``qkv``, in ``[0, H*D)``) of ``units`` now."""
    heads, dim = module.num_heads, head_dim_of(module)
    if kind == HEADS:
        return [h * dim + d for h in sorted(units) for d in range(dim)]
    return [h * dim + d for h in range(heads) for d in sorted(units)]


def after_pruning(module: nn.Module, kind: str, units: Sequence[int], old_dim: int) -> None:
    """Make ``module``'s attributes match its pruned ``qkv``/``proj`` (module docstring)."""
    removed = sorted(units)
    if kind == HEADS:
        keep = [h for h in range(module.num_heads) if h not in set(removed)]
        for name, dim in PER_HEAD_PARAMS.items():
            param = getattr(module, name, None)
            if isinstance(param, nn.Parameter):
                kept = param.data.index_select(dim % param.dim(), torch.tensor(keep))
                setattr(module, name, nn.Parameter(kept, requires_grad=param.requires_grad))
        module.num_heads = len(keep)
    else:
        new_dim = old_dim - len(removed)
        q_rows = module.num_heads * new_dim  # q comes first in the pruned qkv rows
        factor = math.sqrt(new_dim / old_dim)
        with torch.no_grad():
            module.qkv.weight[:q_rows] *= factor
            if module.qkv.bias is not None:
                module.qkv.bias[:q_rows] *= factor
        if isinstance(getattr(module, "head_dim", None), int):
            module.head_dim = new_dim
        module.scale = new_dim**-0.5
    if isinstance(getattr(module, "attn_dim", None), int):
        module.attn_dim = module.num_heads * head_dim_of(module)


__all__ = [
    "HEADS",
    "HEAD_DIMS",
    "AttentionSite",
    "GroupOptions",
    "after_pruning",
    "find_attention",
    "head_dim_of",
    "root_indices",
]
