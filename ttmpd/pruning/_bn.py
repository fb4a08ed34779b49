"""Adaptive BatchNorm: re-estimate BN statistics on unlabeled test-time samples (EagleEye)."""

from __future__ import annotations

import torch
from torch import nn


def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> nn.Module:
    """Replace every BN's running mean/var by their average over ``images`` (N, C, H, W).

    BN layers run in training mode with cumulative averaging (``momentum=None``); all other
    layers stay in eval mode and no parameter changes. Returns ``model`` in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    model.eval()
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size])
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return model


def adaptive_bn_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 128
) -> torch.Tensor:
    """:func:`recalibrate_bn` on ``images``, then the model's outputs on them (no grad).

    When ``images`` fit in one batch, the outputs are those of the recalibration pass
    itself: BN normalised by the batch statistics, which are the new running statistics
    (up to the unbiased-variance factor ``n / (n - 1)`` with ``n = N·H·W``, below 1e-4
    here). That saves the second forward pass. Otherwise an eval pass follows.
    """
    if len(images) > batch_size:
        recalibrate_bn(model, images, batch_size)
        with torch.no_grad():
            return torch.cat([model(b) for b in images.split(batch_size)])
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            return model(images)
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
        model.eval()
