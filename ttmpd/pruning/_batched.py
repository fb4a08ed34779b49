"""Adaptive-BN outputs of many masked candidates in one forward pass.

``M`` candidates (each a set of removed root channels per group) are evaluated on the same
``N`` proxy images by stacking ``M`` copies of the images along the batch (``M·N``
samples, candidate-major). Forward hooks on a working copy of the model then make each
slice of ``N`` samples compute what :func:`~ttmpd.pruning._bn.adaptive_bn_logits` computes
for that candidate alone:

* every module on the ``"out"`` side of a group multiplies its output by the candidate's
  0/1 channel mask (what :class:`~ttmpd.pruning._mask.ChannelMasker` does by zeroing weight
  rows: a zeroed row yields a zero channel, and so does a zero mask);
* every BatchNorm normalises each candidate's slice by that slice's own batch mean and
  biased variance — the statistics adaptive BN estimates for the candidate alone — so no
  statistic leaks from one candidate to another;
* a LayerNorm that loses channels normalises over each candidate's kept channels only
  (:func:`~ttmpd.pruning._mask.masked_layer_norm`), as the pruned LayerNorm does.

The channel dimension of an output is the last one for ``nn.Linear`` and ``nn.LayerNorm``,
dimension 1 otherwise (convolutions, BatchNorm). Nothing else in the model may mix samples
across the batch.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ._groups import ChannelGroup
from ._mask import masked_layer_norm, normalises_last_dim

Removed = Mapping[str, Iterable[int]]

#: Samples per forward (candidates × images) when the caller does not say.
DEFAULT_MAX_SAMPLES = 2048


#: Output-side member kinds whose channel mask the hooks know how to apply.
SUPPORTED = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
)


def supported(model: nn.Module, groups: Iterable[ChannelGroup]) -> bool:
    """Whether every ``"out"`` member of ``groups`` is a kind :class:`BatchedCandidates`
    can mask (:data:`SUPPORTED`); otherwise evaluate candidates one at a time."""
    modules = dict(model.named_modules())
    return all(
        isinstance(modules.get(piece.path), SUPPORTED)
        for group in groups
        for piece in group.slices
        if piece.side == "out"
    )


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
                ones = torch.ones(part.shape[1], device=part.device)
                weight = (ones if weight is None else weight) * self.mask[i]
                bias = (torch.zeros_like(ones) if bias is None else bias) * self.mask[i]
            outs.append(F.batch_norm(part, None, None, weight, bias, True, 0.0, bn.eps))
        return outs[0] if len(outs) == 1 else torch.cat(outs)


class BatchedCandidates:
    """Adaptive-BN logits of many pruning candidates of ``model`` on ``images``.

    ``max_samples`` bounds ``candidates × len(images)`` per forward (memory); more
    candidates are split into several forwards, candidates that change the model later
    together. The first call records one pass of the unpruned model (module call order and
    outputs, one set of activations kept); later forwards replay the outputs of the modules
    that end before the first one their candidates change, instead of computing them.
    :attr:`forwards` counts forward passes (the recording included), :attr:`evaluated`
    candidates and :attr:`replayed` replayed module calls, for reporting.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Iterable[ChannelGroup],
        images: torch.Tensor,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        self.model = copy.deepcopy(model).eval().to(images.device)
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
        self._trace: _Trace | None = None
        self.replayed = 0

    def logits(self, candidates: Sequence[Removed]) -> list[torch.Tensor]:
        """One ``(N, classes)`` logit tensor per candidate, in order."""
        if self._trace is None:
            self._trace = self._record()
        first = [self._first_change(c) for c in candidates]
        order = sorted(range(len(candidates)), key=lambda i: -first[i])
        out: list[torch.Tensor] = [torch.empty(0)] * len(candidates)
        for start in range(0, len(order), self.per_forward):
            rows = order[start : start + self.per_forward]
            chunk = [candidates[i] for i in rows]
            logits = self._forward(chunk, self._skippable(min(first[i] for i in rows)))
            for i, part in zip(rows, logits.split(len(self.images)), strict=True):
                out[i] = part
        return out

    def _record(self) -> _Trace:
        """One pass of the unpruned model: when each module starts and ends (call order),
        how often it is called, and its output."""
        trace = _Trace()
        tick = itertools.count()

        def before(path):
            def hook(module, inputs):
                trace.start.setdefault(path, next(tick))
                trace.calls[path] = trace.calls.get(path, 0) + 1

            return hook

        def after(path):
            def hook(module, inputs, output):
                trace.end[path] = next(tick)
                if isinstance(output, torch.Tensor):
                    trace.output[path] = output.detach().clone()  # later in-place ops

            return hook

        modules = [(p, m) for p, m in self.model.named_modules() if p]
        handles = [m.register_forward_pre_hook(before(p)) for p, m in modules]
        handles += [m.register_forward_hook(after(p)) for p, m in modules]
        try:
            self._forward([{}], {})
        finally:
            for handle in handles:
                handle.remove()
        self.evaluated -= 1  # a forward, not a candidate
        for group_id in self.groups:
            paths = [
                p for p, pieces in self._pieces.items() if any(g == group_id for g, *_ in pieces)
            ]
            starts = [trace.start[p] for p in paths if p in trace.start]
            trace.group_start[group_id] = min(starts) if starts else -1
        return trace

    def _first_change(self, removed: Removed) -> float:
        """Call index of the first module whose output this candidate changes (inf: none)."""
        starts = [self._trace.group_start.get(g, -1) for g, c in removed.items() if list(c)]
        return min(starts, default=math.inf)

    def _skippable(self, before: float) -> dict[str, torch.Tensor]:
        """Outermost modules called once that end before call index ``before``: their
        outputs are the recorded ones whatever the candidates (same inputs, nothing masked
        yet), so the forward replays them instead of computing them."""
        trace = self._trace
        done = {p for p, n in trace.calls.items()
                if n == 1 and p in trace.output and trace.end[p] < before}  # fmt: skip
        outer = {p for p in done if not any(a in done for a in _ancestors(p))}
        return {p: trace.output[p] for p in outer}

    def _forward(
        self, chunk: Sequence[Removed], replay: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        self._m = len(chunk)
        self._masks = {path: self._mask(path, chunk) for path in self._pieces}
        for path, bn in self._bns.items():
            bn.candidates, bn.mask = self._m, self._masks.get(path)
        handles = [
            module.register_forward_hook(self._mask_hook(path))
            for path, module in self._masked.items()
        ]
        replayed = [self.model.get_submodule(p) for p in replay]
        for module, output in zip(replayed, replay.values(), strict=True):
            module.forward = _Replay(output, self._m)
        try:
            with torch.no_grad():
                batch = self.images.repeat(self._m, *([1] * (self.images.dim() - 1)))
                logits = self.model(batch)
        finally:
            for handle in handles:
                handle.remove()
            for module in replayed:
                del module.forward
            self._masks = {}
        self.forwards += 1
        self.evaluated += self._m
        self.replayed += len(replayed)
        return logits

    def _mask(self, path: str, chunk: Sequence[Removed]) -> torch.Tensor:
        module = self._bns[path].bn if path in self._bns else self._masked[path]
        size = max(max(idx) for _, idx, _ in self._pieces[path]) + 1
        size = _channel_count(module, size)
        mask = torch.ones(len(chunk), size, device=self.images.device)
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
            if normalises_last_dim(module):
                return masked_layer_norm(module, inputs[0], mask)
            shape = [self._m, -1, *output.shape[1:]]
            view = [1] * (output.dim() + 1)
            view[0] = self._m
            if _channels_last(module):
                view[-1] = mask.shape[1]
            else:
                view[2] = mask.shape[1]
            return (output.reshape(shape) * mask.reshape(view)).reshape(output.shape)

        return hook


class _Replay:
    """Stands in for a module's forward: its recorded output, once per candidate."""

    def __init__(self, output: torch.Tensor, candidates: int) -> None:
        self.output, self.candidates = output, candidates

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.output.repeat(self.candidates, *([1] * (self.output.dim() - 1)))


@dataclass
class _Trace:
    start: dict[str, int] = field(default_factory=dict)
    end: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    output: dict[str, torch.Tensor] = field(default_factory=dict)
    group_start: dict[str, int] = field(default_factory=dict)


def _ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _channel_count(module: nn.Module, at_least: int) -> int:
    for attr in ("out_channels", "out_features", "num_features"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    shape = getattr(module, "normalized_shape", None)
    if shape:
        return int(shape[-1])
    return at_least
