"""Adaptive-BN outputs of many masked candidates in one forward pass.

``M`` candidates (each a set of removed root channels per group) are evaluated on the same
``N`` calibration images by stacking ``M`` copies of the images along the batch (``M·N``
samples, candidate-major). Forward hooks on a working copy of the model then make each
slice of ``N`` samples compute what :func:`~ttmpd.pruning._bn.adaptive_bn_logits` computes
for that candidate alone:

* every module on the ``"out"`` side of a group multiplies its output by the candidate's
  0/1 channel mask (what :class:`~ttmpd.pruning._mask.ChannelMasker` does by zeroing weight
  rows: a zeroed row yields a zero channel, and so does a zero mask);
* every BatchNorm normalises each candidate's slice by that slice's own batch mean and
  biased variance — the statistics adaptive BN estimates for the candidate alone — so no
  statistic leaks from one candidate to another.

The channel dimension of an output is the last one for ``nn.Linear`` and ``nn.LayerNorm``,
dimension 1 otherwise (convolutions, BatchNorm). Nothing else in the model may mix samples
across the batch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._groups import ChannelGroup

Removed = Mapping[str, Iterable[int]]

#: Samples per forward (candidates × images) when the caller does not say.
DEFAULT_MAX_SAMPLES = 2048


def _channels_last(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | nn.LayerNorm)


class _CandidateBN(nn.Module):
    """Stands in for one BatchNorm of the working copy: each candidate's slice of the batch
    is normalised by its own batch statistics (training-mode ``F.batch_norm`` without
    running statistics), scale and shift multiplied by the candidate's channel mask."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.bn = bn
        self.candidates = 1
        self.mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, outs = self.bn, []
        for i, part in enumerate(x.chunk(self.candidates)):
            weight, bias = bn.weight, bn.bias
            if self.mask is not None:
                ones = torch.ones(part.shape[1])
                weight = (ones if weight is None else weight) * self.mask[i]
                bias = (torch.zeros_like(ones) if bias is None else bias) * self.mask[i]
            outs.append(F.batch_norm(part, None, None, weight, bias, True, 0.0, bn.eps))
        return outs[0] if len(outs) == 1 else torch.cat(outs)


class BatchedCandidates:
    """Adaptive-BN logits of many pruning candidates of ``model`` on ``images``.

    ``max_samples`` bounds ``candidates × len(images)`` per forward (memory); more
    candidates are split into several forwards. :attr:`forwards` counts forward passes and
    :attr:`evaluated` candidates, for reporting.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Iterable[ChannelGroup],
        images: torch.Tensor,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        self.model = copy.deepcopy(model).eval()
        self.images = images
        self.groups = {g.id: g for g in groups}
        self.per_forward = max(1, max_samples // max(len(images), 1))
        self.forwards = 0
        self.evaluated = 0
        #: module path -> [(group id, positions along the module's channels, root indices)]
        self._pieces: dict[str, list[tuple[str, list[int], list[int]]]] = {}
        for group in self.groups.values():
            for piece in group.slices:
                if piece.side == "out":
                    entry = (group.id, list(piece.indices), list(piece.root_indices))
                    self._pieces.setdefault(piece.path, []).append(entry)
        self._bns: dict[str, _CandidateBN] = {}
        for path, module in list(self.model.named_modules()):
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                self._bns[path] = _CandidateBN(module)
                parent, _, name = path.rpartition(".")
                setattr(self.model.get_submodule(parent), name, self._bns[path])
        modules = dict(self.model.named_modules())
        self._masked = {p: modules[p] for p in self._pieces if p not in self._bns}
        self._masks: dict[str, torch.Tensor] = {}
        self._m = 1

    def logits(self, candidates: Sequence[Removed]) -> list[torch.Tensor]:
        """One ``(N, classes)`` logit tensor per candidate, in order."""
        out: list[torch.Tensor] = []
        for start in range(0, len(candidates), self.per_forward):
            chunk = candidates[start : start + self.per_forward]
            out += list(self._forward(chunk).split(len(self.images)))
        return out

    def _forward(self, chunk: Sequence[Removed]) -> torch.Tensor:
        self._m = len(chunk)
        self._masks = {path: self._mask(path, chunk) for path in self._pieces}
        for path, bn in self._bns.items():
            bn.candidates, bn.mask = self._m, self._masks.get(path)
        handles = [
            module.register_forward_hook(self._mask_hook(path))
            for path, module in self._masked.items()
        ]
        try:
            with torch.no_grad():
                batch = self.images.repeat(self._m, *([1] * (self.images.dim() - 1)))
                logits = self.model(batch)
        finally:
            for handle in handles:
                handle.remove()
            self._masks = {}
        self.forwards += 1
        self.evaluated += self._m
        return logits

    def _mask(self, path: str, chunk: Sequence[Removed]) -> torch.Tensor:
        module = self._bns[path].bn if path in self._bns else self._masked[path]
        size = max(max(idx) for _, idx, _ in self._pieces[path]) + 1
        size = _channel_count(module, size)
        mask = torch.ones(len(chunk), size)
        for row, removed in enumerate(chunk):
            for group_id, indices, roots in self._pieces[path]:
                drop = set(int(c) for c in removed.get(group_id, ()))
                if drop:
                    hit = [i for i, r in zip(indices, roots, strict=True) if r in drop]
                    mask[row, hit] = 0.0
        return mask

    def _mask_hook(self, path: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
            mask = self._masks[path]
            if bool(mask.all()):
                return output
            shape = [self._m, -1, *output.shape[1:]]
            view = [1] * (output.dim() + 1)
            view[0] = self._m
            if _channels_last(module):
                view[-1] = mask.shape[1]
            else:
                view[2] = mask.shape[1]
            return (output.reshape(shape) * mask.reshape(view)).reshape(output.shape)

        return hook


def _channel_count(module: nn.Module, at_least: int) -> int:
    for attr in ("out_channels", "out_features", "num_features"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    shape = getattr(module, "normalized_shape", None)
    if shape:
        return int(shape[-1])
    return at_least
