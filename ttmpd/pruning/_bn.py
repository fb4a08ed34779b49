"""Adaptive BatchNorm for scoring prunes: the statistics re-estimated on unlabeled test
samples (EagleEye), and the logits of that pass."""

from __future__ import annotations

import torch
from torch import nn

from .._bn import adapt_bn as adapt_bn
from .._bn import adapting


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
    with adapting(model):
        return model(images)
