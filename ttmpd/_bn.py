"""Adaptive BatchNorm: BN statistics re-estimated on unlabeled samples (EagleEye).

Shared by pruning (scoring prunes) and distillation (the student after training), which
import nothing from each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def adapting(model: nn.Module) -> Iterator[None]:
    """BN layers reset, in training mode with cumulative averaging (``momentum=None``);
    everything else in eval mode (dropout off, no random numbers drawn). On exit the
    momenta are restored and the model is in eval mode; no parameter changes."""
    bns = batch_norms(model)
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


def adapt_bn_batches(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Replace every BN's running mean/var by their average over the batches' statistics
    (each batch (B, ...) a model input). Returns ``model`` in eval mode; no parameter
    changes; the batches are not drawn when the model has no BN."""
    if batch_norms(model):
        with adapting(model):
            for x in batches:
                model(x)
    return model.eval()


def adapt_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> nn.Module:
    """:func:`adapt_bn_batches` over ``images`` (N, C, H, W) in batches of ``batch_size``."""
    return adapt_bn_batches(model, images.split(batch_size))
