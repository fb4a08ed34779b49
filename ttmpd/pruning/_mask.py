"""Evaluating prune candidates by masking channels instead of removing them.

Zeroing a group's output channels in every producing layer (conv/linear weight rows and
biases, BatchNorm scale and shift) makes the model compute exactly what the pruned model
computes: the masked channels are zero after the BN, stay zero through activations, pooling
and residual adds (every operand of the add is in the same group and masked too), and
contribute nothing to consumers. Unlike :func:`apply_plan` this needs no dependency-graph
rebuild, so a search can score hundreds of candidates on one working copy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ._groups import ChannelGroup


class ChannelMasker:
    """A working copy of ``model`` that can be reset and masked quickly."""

    def __init__(self, model: nn.Module, groups: Iterable[ChannelGroup]) -> None:
        self.model = copy.deepcopy(model).eval()
        self.groups = {g.id: g for g in groups}
        self._modules = dict(self.model.named_modules())
        self._base = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def reset(self) -> nn.Module:
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
                        _zero_rows(self._modules[piece.path], torch.tensor(rows))
        return self.model


def _zero_rows(module: nn.Module, rows: torch.Tensor) -> None:
    for name in ("weight", "bias"):
        param = getattr(module, name, None)
        if isinstance(param, torch.Tensor):
            param[rows] = 0
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
        module.running_mean[rows] = 0
        module.running_var[rows] = 1
