"""Adaptive BatchNorm: re-estimating BN statistics on unlabeled test samples (EagleEye)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def _adapting(model: nn.Module) -> Iterator[None]:
    """BN layers reset, in training mode with cumulative averaging (``momentum=None``);
    everything else in eval mode. On exit the momenta are restored and the model is in eval
    mode; no parameter changes."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
        model.eval()


def adapt_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> nn.Module:
    """Replace every BN's running mean/var by their average over ``images`` (N, C, H, W).

    Returns ``model`` in eval mode; no parameter changes.
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model.eval()
    with _adapting(model):
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    return model


def adaptive_bn_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 128
) -> torch.Tensor:
    """:func:`adapt_bn` on ``images``, then the model's outputs on them (no grad).

    When ``images`` fit in one batch, the outputs are those of the adaptation pass
    itself: BN normalised by the batch statistics, which are the new running statistics
    (up to the unbiased-variance factor ``n / (n - 1)`` with ``n = N·H·W``, below 1e-4
    here). That saves the second forward pass. Otherwise an eval pass follows.
    """
    if len(images) > batch_size:
        adapt_bn(model, images, batch_size)
        with torch.no_grad():
            return torch.cat([model(b) for b in images.split(batch_size)])
    with _adapting(model):
        return model(images)
