"""Per-channel importance within a channel group.

Every criterion has one signature, ``fn(model, group, **ctx) -> np.ndarray`` of shape
``(group.channels,)`` (float64, larger = more important), and is looked up by name in
:data:`IMPORTANCES` (``importance("l1")``):

``l1``, ``l2``
    Magnitude of the group's output-channel weights: for every producing conv/linear member
    (``"out"`` side, weights only), the L1 norm / squared L2 norm of channel ``c``'s filter,
    summed over members (``l2`` takes the square root of the sum).
``bn_scale``
    ``|gamma|`` of the group's BatchNorm members, summed (Network Slimming, Liu et al.,
    ICCV 2017). Groups without BatchNorm fall back to ``l1``.
``random``
    Uniform noise from ``seed`` (context, default 0) and the group id: reproducible.
``taylor``
    First-order Taylor expansion of the loss, ``sum |w * dL/dw|`` over every parameter
    entry of every member belonging to channel ``c`` (weights and biases, output and input
    sides; Molchanov et al., CVPR 2019). Needs ``loss_fn(model) -> scalar Tensor`` (e.g. a
    cross-entropy on pseudo labels) or precomputed ``grads`` from :func:`parameter_grads`.
``bn_taylor``
    HALP's saliency (Shen et al., NeurIPS 2022): the Taylor estimate of removing channel
    ``c``'s BatchNorm output, ``|gamma_c · dL/dgamma_c + beta_c · dL/dbeta_c|`` per BatchNorm
    member, summed over the group's BatchNorms. Needs ``loss_fn`` or ``grads`` like
    ``taylor``; groups without BatchNorm fall back to ``taylor``. HALP averages it over the
    mini-batches between two pruning steps (:mod:`ttmpd.pruning._halp`).

These are implemented on the group's index maps (:class:`~ttmpd.pruning.MemberSlice`)
rather than by wrapping torch-pruning's importance classes, which need its live ``Group``
objects and normalise/reduce in ways we do not want to inherit.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from .._registry import Registry
from ..errors import InputError
from ._groups import ChannelGroup

ImportanceFn = Callable[..., np.ndarray]

IMPORTANCES: Registry[ImportanceFn] = Registry("importance")

_BN = (nn.modules.batchnorm._BatchNorm,)
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


def _rows(tensor: torch.Tensor, side: str, module: nn.Module) -> int | None:
    """The tensor dimension holding channels for ``side`` of ``module``, or None."""
    if tensor.dim() == 0:
        return None
    if side == "out":
        return 0
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1 and tensor.dim() > 1:
        return 1
    if isinstance(module, nn.Linear) and tensor.dim() == 2:
        return 1
    return None


def _accumulate(
    group: ChannelGroup,
    model: nn.Module,
    per_entry: Callable[[nn.Module, str, torch.Tensor], torch.Tensor | None],
    sides: Iterable[str] = ("out",),
    types: tuple[type, ...] = _WEIGHTED,
    params: tuple[str, ...] = ("weight",),
) -> tuple[np.ndarray, bool]:
    """Sum ``per_entry(module, name, tensor)`` reduced per channel into root channels."""
    total = np.zeros(group.channels, dtype=np.float64)
    found = False
    for sl in group.slices:
        if sl.side not in sides:
            continue
        module = model.get_submodule(sl.path)
        if not isinstance(module, types):
            continue
        for name in params:
            tensor = getattr(module, name, None)
            if not isinstance(tensor, torch.Tensor):
                continue
            dim = _rows(tensor, sl.side, module)
            if dim is None or max(sl.indices) >= tensor.shape[dim]:
                continue
            values = per_entry(module, name, tensor.detach())
            if values is None:
                continue
            moved = values.movedim(dim, 0).reshape(tensor.shape[dim], -1).sum(1)
            picked = moved[list(sl.indices)].double().cpu().numpy()
            np.add.at(total, np.asarray(sl.root_indices), picked)
            found = True
    return total, found


def _check_group(model: nn.Module, group: ChannelGroup) -> None:
    if not isinstance(group, ChannelGroup):
        raise InputError(f"group must be a ChannelGroup, got {type(group).__name__}")
    if not group.slices:
        raise InputError(f"group {group.id!r} carries no index maps; get it from channel_groups()")
    names = dict(model.named_modules())
    missing = [sl.path for sl in group.slices if sl.path not in names]
    if missing:
        raise InputError(f"group {group.id!r} names layer {missing[0]!r}, not in this model")


@IMPORTANCES.register("l1")
def l1_importance(model: nn.Module, group: ChannelGroup, **ctx) -> np.ndarray:
    """Summed L1 norm of the group's output-channel filters (see module docstring)."""
    _check_group(model, group)
    return _accumulate(group, model, lambda _m, _n, t: t.abs())[0]


@IMPORTANCES.register("l2")
def l2_importance(model: nn.Module, group: ChannelGroup, **ctx) -> np.ndarray:
    """Root of the summed squared L2 norms of the group's output-channel filters."""
    _check_group(model, group)
    return np.sqrt(_accumulate(group, model, lambda _m, _n, t: t.square())[0])


@IMPORTANCES.register("bn_scale")
def bn_scale_importance(model: nn.Module, group: ChannelGroup, **ctx) -> np.ndarray:
    """Summed ``|gamma|`` of the group's BatchNorms; ``l1`` when it has none."""
    _check_group(model, group)
    total, found = _accumulate(group, model, lambda _m, _n, t: t.abs(), types=_BN)
    return total if found else l1_importance(model, group)


@IMPORTANCES.register("random")
def random_importance(model: nn.Module, group: ChannelGroup, seed: int = 0, **ctx) -> np.ndarray:
    """Uniform noise, reproducible from ``seed`` and the group id."""
    _check_group(model, group)
    rng = np.random.default_rng([int(seed), zlib.crc32(group.id.encode())])
    return rng.random(group.channels)


def parameter_grads(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor]):
    """``{parameter name: dL/dp}`` from one backward pass of ``loss_fn(model)``.

    Existing ``.grad`` values are saved and restored; parameters without a gradient are
    left out. Compute this once and pass it as ``grads=`` to score many groups.
    """
    if not callable(loss_fn):
        raise InputError("loss_fn must be a callable loss_fn(model) -> scalar Tensor")
    params = dict(model.named_parameters())
    saved = {n: p.grad for n, p in params.items()}
    flags = {n: p.requires_grad for n, p in params.items()}
    try:
        for p in params.values():
            p.grad = None
            p.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise InputError("loss_fn(model) must return a scalar Tensor")
            loss.backward()
        return {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
    finally:
        for n, p in params.items():
            p.grad = saved[n]
            p.requires_grad_(flags[n])


def _gradients(model, group, loss_fn, grads, name: str) -> Mapping[str, torch.Tensor]:
    """The group checked, and ``grads`` or one backward pass of ``loss_fn``."""
    _check_group(model, group)
    if grads is not None:
        return grads
    if loss_fn is None:
        raise InputError(f"{name} importance needs loss_fn=callable(model) -> loss, or grads=")
    return parameter_grads(model, loss_fn)


@IMPORTANCES.register("taylor")
def taylor_importance(
    model: nn.Module,
    group: ChannelGroup,
    loss_fn: Callable[[nn.Module], torch.Tensor] | None = None,
    grads: Mapping[str, torch.Tensor] | None = None,
    **ctx,
) -> np.ndarray:
    """``sum |w * grad|`` over the group's parameters per channel (see module docstring)."""
    grads = _gradients(model, group, loss_fn, grads, "taylor")
    names = {m: n for n, m in model.named_modules()}

    def entry(module: nn.Module, pname: str, tensor: torch.Tensor) -> torch.Tensor | None:
        prefix = names[module]
        grad = grads.get(f"{prefix}.{pname}" if prefix else pname)
        return None if grad is None else (tensor * grad).abs()

    types = (*_WEIGHTED, *_BN)
    return _accumulate(
        group, model, entry, sides=("out", "in"), types=types, params=("weight", "bias")
    )[0]


@IMPORTANCES.register("bn_taylor")
def bn_taylor_importance(
    model: nn.Module,
    group: ChannelGroup,
    loss_fn: Callable[[nn.Module], torch.Tensor] | None = None,
    grads: Mapping[str, torch.Tensor] | None = None,
    **ctx,
) -> np.ndarray:
    """``|gamma · dL/dgamma + beta · dL/dbeta|`` per channel, summed over the group's
    BatchNorms (see module docstring)."""
    grads = _gradients(model, group, loss_fn, grads, "bn_taylor")
    names = {m: n for n, m in model.named_modules()}

    def entry(module: nn.Module, pname: str, tensor: torch.Tensor) -> torch.Tensor | None:
        prefix = f"{names[module]}." if names[module] else ""
        g_w, g_b = grads.get(f"{prefix}weight"), grads.get(f"{prefix}bias")
        if g_w is None or g_b is None or module.bias is None:
            return None
        return (tensor * g_w + module.bias.detach() * g_b).abs()

    total, found = _accumulate(group, model, entry, types=_BN)
    return total if found else taylor_importance(model, group, grads=grads)


def importance(name: str) -> ImportanceFn:
    """The importance function registered as ``name`` (l1, l2, bn_scale, random, taylor,
    bn_taylor)."""
    return IMPORTANCES.get(name)


__all__ = ["IMPORTANCES", "ImportanceFn", "importance", "parameter_grads"]
