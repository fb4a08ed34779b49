"""Evaluating prune candidates by masking channels instead of removing them.

Zeroing a group's output channels in every producing layer (conv/linear weight rows and
biases, BatchNorm scale and shift) makes the model compute exactly what the pruned model
computes: the masked channels are zero after the BN, stay zero through activations, pooling
and residual adds (every operand of the add is in the same group and masked too), and
contribute nothing to consumers. Unlike :func:`apply_plan` this needs no dependency-graph
rebuild, so a search can score hundreds of candidates on one working copy.

A LayerNorm is the exception: its mean and variance run over every channel, so zeroing
some would still change the statistics of the others (and a transformer's residual stream
keeps non-zero position embeddings in masked channels). A LayerNorm that loses channels
is therefore computed over the kept channels only (:func:`masked_layer_norm`), which is
what the pruned LayerNorm computes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ._groups import ChannelGroup


def masked_layer_norm(layer: nn.LayerNorm, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``layer`` applied to the channels (last dim) ``mask`` keeps, 0 in the others:
    ``y = (x − μ) / sqrt(σ² + eps) · w + b`` with ``μ = Σ m·x / Σ m`` and
    ``σ² = Σ m·(x − μ)² / Σ m``, times ``m``. ``mask`` (0/1, shape ``(C,)``, or
    ``(M, C)`` for ``M`` candidates stacked along the batch of ``x``) must broadcast against
    ``x`` after that reshape."""
    mask = mask.to(x.dtype)
    m = mask.shape[0] if mask.dim() == 2 else 1
    parts = x.reshape(m, -1, *x.shape[1:])
    view = [m, *([1] * (parts.dim() - 2)), x.shape[-1]]
    keep = mask.reshape(view)
    count = keep.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (parts * keep).sum(-1, keepdim=True) / count
    var = (((parts - mean) * keep) ** 2).sum(-1, keepdim=True) / count
    y = (parts - mean) / torch.sqrt(var + layer.eps)
    if layer.weight is not None:
        y = y * layer.weight
    if layer.bias is not None:
        y = y + layer.bias
    return (y * keep).reshape(x.shape)


def normalises_last_dim(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1


class ChannelMasker:
    """A working copy of ``model`` that can be reset and masked quickly."""

    def __init__(self, model: nn.Module, groups: Iterable[ChannelGroup]) -> None:
        self.model = copy.deepcopy(model).eval()
        self.groups = {g.id: g for g in groups}
        self._modules = dict(self.model.named_modules())
        self._base = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._hooks: list = []

    def reset(self) -> nn.Module:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        with torch.no_grad():
            for name, tensor in self.model.state_dict().items():
                tensor.copy_(self._base[name])
        return self.model

    def masked(self, removed: Mapping[str, Iterable[int]]) -> nn.Module:
        """The working copy with ``removed[group_id]`` root channels zeroed (others reset)."""
        self.reset()
        with torch.no_grad():
            for group_id, channels in removed.items():
                drop = set(int(c) for c in channels)
                if not drop:
                    continue
                for piece in self.groups[group_id].slices:
                    if piece.side != "out":
                        continue
                    rows = [i for i, r in zip(piece.indices, piece.root_indices, strict=True)
                            if r in drop]  # fmt: skip
                    if rows:
                        module = self._modules[piece.path]
                        _zero_rows(module, torch.tensor(rows))
                        if normalises_last_dim(module):
                            self._hooks.append(_keep_only(module, rows))
        return self.model


def _keep_only(layer: nn.LayerNorm, rows: list[int]):
    """A forward hook making ``layer`` normalise over all channels but ``rows``."""
    mask = torch.ones(layer.normalized_shape[0])
    mask[rows] = 0.0

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        return masked_layer_norm(module, inputs[0], mask.to(output.device))

    return layer.register_forward_hook(hook)


def _zero_rows(module: nn.Module, rows: torch.Tensor) -> None:
    for name in ("weight", "bias"):
        param = getattr(module, name, None)
        if isinstance(param, torch.Tensor):
            param[rows.to(param.device)] = 0
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
        rows = rows.to(module.running_mean.device)
        module.running_mean[rows] = 0
        module.running_var[rows] = 1
