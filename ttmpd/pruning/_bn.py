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
