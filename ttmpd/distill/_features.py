"""What a distillation loss sees: logits plus hooked intermediate features.

:class:`Features` is the one argument type of every loss; :class:`FeatureHooks` fills it
with forward hooks registered by module path (``"layer2"``, ``"layer3.1.conv2"``), so no
model is changed. Hooks are removed on :meth:`FeatureHooks.close` (or leaving a ``with``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError


@dataclass(frozen=True)
class Features:
    """Model outputs for one batch.

    Attributes:
        logits: ``(B, C)`` class scores.
        features: hooked intermediate outputs, in the order of the configured layer paths
            (4-D ``(B, C, H, W)`` or 2-D ``(B, D)``; token outputs ``(B, N, C)`` arrive as
            maps ``(B, C, N, 1)``, see :func:`as_feature`).
        index: ``(B,)`` int64 sample indices into the fine-tuning subset (memory-bank losses
            such as CRD use them), or None.
    """

    logits: torch.Tensor
    features: tuple[torch.Tensor, ...] = field(default=())
    index: torch.Tensor | None = None

    def detach(self) -> Features:
        return Features(self.logits.detach(), tuple(f.detach() for f in self.features), self.index)


def as_feature(output: torch.Tensor) -> torch.Tensor:
    """A hooked output as losses see it: 4-D maps and 2-D vectors as they are; 3-D token
    tensors ``(B, N, C)`` (transformer blocks: N tokens of hidden width C) as maps
    ``(B, C, N, 1)``, so the hidden width is the channel axis a pruned student shrinks and
    connectors map, and the tokens are the positions spatial losses (AT, NST, FSP) compare.
    Other ranks raise InputError."""
    if output.ndim in (2, 4):
        return output
    if output.ndim == 3:
        return output.transpose(1, 2).unsqueeze(-1)
    raise InputError(
        f"a hooked feature of shape {tuple(output.shape)} is neither a map (B, C, H, W), "
        "tokens (B, N, C) nor a vector (B, D); hook another layer"
    )


def find_module(model: nn.Module, path: str, *, what: str = "model") -> nn.Module:
    """The submodule at ``path``, or InputError listing a few valid paths."""
    modules = dict(model.named_modules())
    if path not in modules or not path:
        names = [n for n in modules if n and "." not in n]
        raise InputError(
            f"feature layer {path!r} not found in the {what}; give a module path such as "
            f"{', '.join(names[:6]) or '(the model has no submodules)'}"
        )
    return modules[path]


def default_feature_layers(model: nn.Module) -> list[str]:
    """``layer1..layer4`` (ResNet-style stages) when present, else the top-level children
    that are not the classifier (the last child)."""
    children = [name for name, _ in model.named_children()]
    stages = [name for name in children if name.startswith("layer") and name[5:].isdigit()]
    if stages:
        return stages
    return children[:-1]


class FeatureHooks:
    """Record the outputs of the modules at ``paths`` during every forward pass.

    ``hooks.run(model, x)`` returns :class:`Features` with the model output as logits and
    the recorded outputs in ``paths`` order. Tensors keep their autograd graph (the caller
    decides whether to detach, e.g. via ``inference_mode`` for the teacher).
    """

    def __init__(self, model: nn.Module, paths: Sequence[str], *, what: str = "model") -> None:
        self.paths = list(paths)
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        for path in self.paths:
            module = find_module(model, path, what=what)
            self._handles.append(module.register_forward_hook(self._hook(path)))

    def _hook(self, path: str):
        def record(_module: nn.Module, _inputs, output) -> None:
            if isinstance(output, tuple | list):
                output = output[0]
            self._outputs[path] = as_feature(output)

        return record

    def run(self, model: nn.Module, x: torch.Tensor, index: torch.Tensor | None = None):
        self._outputs.clear()
        logits = model(x)
        missing = [p for p in self.paths if p not in self._outputs]
        if missing:
            raise InputError(
                f"feature layer(s) {', '.join(missing)} did not run in the forward pass; "
                "choose modules the model actually calls"
            )
        features = tuple(self._outputs[p] for p in self.paths)
        self._outputs.clear()
        return Features(logits, features, index)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> FeatureHooks:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
