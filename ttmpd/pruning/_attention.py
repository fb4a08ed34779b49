"""Attention heads and head dims as pruning units (timm-style and BERT-style attention).

A **timm-style** attention module is recognised by its attributes: ``qkv`` (an
``nn.Linear`` producing q, k and v stacked, output row ``p*H*D + h*D + d`` for part ``p``
in q, k, v, head ``h`` and dim ``d``), ``proj`` (an ``nn.Linear`` reading the ``H*D`` head
outputs, column ``h*D + d``) and ``num_heads`` (``H``); ``D`` is ``head_dim`` when the
module has it, else ``qkv.out_features // (3 H)``. timm's ViT/DeiT ``Attention`` and Swin's
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

A **BERT-style** self-attention module (Hugging Face ``BertSelfAttention`` and its copies,
e.g. ELECTRA's) has three ``nn.Linear`` ``query``, ``key``, ``value`` of ``H*D`` rows
each (row ``h*D + d``), ``num_attention_heads`` (``H``), ``attention_head_size`` (``D``)
and ``all_head_size`` (``H*D``); its output projection lives outside the module (BERT's
sibling ``output.dense``), so it is found in torch-pruning's dependency graph: the one
linear layer reading the ``H*D`` context columns. Pruning heads lowers
``num_attention_heads`` and ``all_head_size``. Head dims lower ``attention_head_size``
and are offered only when the module keeps its logits scale in a float ``scaling``
attribute (transformers 5 does; older versions divide by ``sqrt(attention_head_size)``),
which then stays ``D**-0.5``: the logits of the kept dims are
unchanged, so the pruned model equals the masked one.

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
#: the q, k, v layers of a BERT-style self-attention module
BERT_PARTS = ("query", "key", "value")
#: per-head parameters pruned with the heads: attribute name -> the dim holding heads
PER_HEAD_PARAMS = {"relative_position_bias_table": -1}


@dataclass(frozen=True)
class GroupOptions:
    """What :func:`~ttmpd.pruning.channel_groups` may offer beyond plain channels.

    ``head_dims``: also a group per attention module whose units are head dims (all heads
    lose the same dims). ``embedding``: groups whose channels a LayerNorm normalises (a
    transformer's residual/embedding width, ConvNeXt's block width) are prunable; off by
    default because every such norm then normalises over fewer channels, a change of the
    whole residual stream rather than of one block.
    """

    head_dims: bool = False
    embedding: bool = False


@dataclass(frozen=True)
class AttentionSite:
    """One attention module: paths, head count ``heads`` (H) and ``head_dim`` (D).

    ``qkv`` is the first (root) of ``parts``, the layers producing q, k and v rows
    (``(qkv,)`` fused, ``(query, key, value)`` BERT-style); ``proj`` reads the heads ("" until
    found in the dependency graph). ``reason`` says why its heads cannot be pruned ("" when
    they can); ``dims_reason`` the same for head dims."""

    path: str
    qkv: str
    proj: str
    heads: int
    head_dim: int
    reason: str = ""
    dims_reason: str = ""
    parts: tuple[str, ...] = ()

    def group_id(self, kind: str) -> str:
        return f"{self.path}#{kind}"

    def units(self, kind: str) -> int:
        return self.heads if kind == HEADS else self.head_dim

    def unit_of(self, root: int, kind: str) -> int:
        """The unit (head or head dim) of root index ``root`` in ``[0, H*D)``."""
        return root // self.head_dim if kind == HEADS else root % self.head_dim


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _int_attr(module: nn.Module, name: str) -> int | None:
    value = getattr(module, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bert_attributes(module: nn.Module) -> bool:
    """Whether ``module`` has BERT's attributes: q, k, v linears and head count and size."""
    parts = [getattr(module, n, None) for n in BERT_PARTS]
    heads, dim = _int_attr(module, "num_attention_heads"), _int_attr(module, "attention_head_size")
    return all(isinstance(p, nn.Linear) for p in parts) and bool(heads) and bool(dim)


def is_bert_style(module: nn.Module) -> bool:
    """Whether ``module`` is BERT-style attention (module docstring): its attributes, and
    ``H*D`` rows in each of ``query``, ``key``, ``value``."""
    if not _bert_attributes(module) or module.num_attention_heads < 1:
        return False
    width = module.num_attention_heads * module.attention_head_size
    return all(getattr(module, n).out_features == width for n in BERT_PARTS)


def heads_of(module: nn.Module) -> int:
    """``H``: the module's current head count."""
    return module.num_attention_heads if _bert_attributes(module) else module.num_heads


def head_dim_of(module: nn.Module) -> int | None:
    """``D``: the module's ``head_dim`` (``attention_head_size``), else qkv rows over
    ``3 H`` (None if uneven)."""
    if _bert_attributes(module):
        return module.attention_head_size
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


def _bert_site(path: str, module: nn.Module) -> AttentionSite:
    """A BERT-style module's site; its ``proj`` is found later in the dependency graph."""
    heads, dim = module.num_attention_heads, module.attention_head_size
    reason, dims_reason = "", ""
    own = [name for name, _ in module.named_parameters(recurse=False)]
    if own:
        reason = f"its parameter {own[0]!r} has a layout head pruning does not know"
    if _int_attr(module, "all_head_size") not in (None, heads * dim):
        reason = "its all_head_size is not num_attention_heads * attention_head_size"
    if not isinstance(getattr(module, "scaling", None), float):
        dims_reason = "it computes its logits scale from attention_head_size (no scaling)"
    elif any(isinstance(m, nn.Embedding) for m in module.children()):
        dims_reason = "a position embedding of attention_head_size dims reads the head dims"
    parts = tuple(_join(path, n) for n in BERT_PARTS)
    return AttentionSite(path=path, qkv=parts[0], proj="", heads=heads, head_dim=dim,
                         reason=reason, dims_reason=dims_reason, parts=parts)  # fmt: skip


def find_attention(model: nn.Module) -> list[AttentionSite]:
    """The attention modules of ``model`` (module docstring), in module order."""
    sites = []
    for path, module in model.named_modules():
        if is_bert_style(module):
            sites.append(_bert_site(path, module))
            continue
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
                parts=(_join(path, "qkv"),),
            )
        )
    return sites


def root_indices(module: nn.Module, kind: str, units: Sequence[int]) -> list[int]:
    """Torch-Pruning root indices (of ``qkv``, in ``[0, H*D)``) of ``units`` now."""
    heads, dim = heads_of(module), head_dim_of(module)
    if kind == HEADS:
        return [h * dim + d for h in sorted(units) for d in range(dim)]
    return [h * dim + d for h in range(heads) for d in sorted(units)]


def after_pruning(module: nn.Module, kind: str, units: Sequence[int], old_dim: int) -> None:
    """Make ``module``'s attributes match its pruned ``qkv``/``proj`` (module docstring)."""
    removed = sorted(units)
    if _bert_attributes(module):
        _after_pruning_bert(module, kind, len(removed))
        return
    if kind == HEADS:
        keep = [h for h in range(module.num_heads) if h not in set(removed)]
        for name, dim in PER_HEAD_PARAMS.items():
            param = getattr(module, name, None)
            if isinstance(param, nn.Parameter):
                index = torch.tensor(keep, device=param.device)
                kept = param.data.index_select(dim % param.dim(), index)
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


def _after_pruning_bert(module: nn.Module, kind: str, removed: int) -> None:
    """BERT-style attributes after removing ``removed`` heads or head dims (``scaling``
    keeps the unpruned ``D**-0.5``, module docstring)."""
    if kind == HEADS:
        module.num_attention_heads -= removed
    else:
        module.attention_head_size -= removed
    if hasattr(module, "all_head_size"):
        module.all_head_size = module.num_attention_heads * module.attention_head_size


__all__ = [
    "BERT_PARTS",
    "HEADS",
    "HEAD_DIMS",
    "AttentionSite",
    "GroupOptions",
    "after_pruning",
    "find_attention",
    "head_dim_of",
    "heads_of",
    "is_bert_style",
    "root_indices",
]
