"""Short-term fine-tuning inside a search (NetAdapt's candidate evaluation).

A few SGD steps of logit distillation towards the unpruned model's outputs on the unlabeled
proxy images: ``loss = T² · KL(softmax(t/T) ‖ softmax(s/T))`` with ``T = 4``. This is
deliberately small and separate from :mod:`ttmpd.distill` (which stands alone and is used
for the final fine-tuning of every method).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._bn import adapt_bn

TEMPERATURE = 4.0


def short_finetune(
    model: nn.Module,
    images: torch.Tensor,
    teacher_logits: torch.Tensor,
    steps: int,
    batch_size: int = 64,
    lr: float = 0.01,
    seed: int = 0,
    on_step: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place for ``steps`` mini-batches of ``images`` ``(N, C, H, W)``
    against ``teacher_logits`` ``(N, K)``, then re-estimate its BN statistics on ``images``
    with the final weights (:func:`~ttmpd.pruning.adapt_bn`); returns it in eval mode.
    ``on_step(model)`` runs after each backward pass, before the update (the gradients are
    in ``.grad``). Every parameter is trained, also one that arrives frozen (a copy of a
    distillation teacher)."""
    for p in model.parameters():
        p.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    soft_targets = F.log_softmax(teacher_logits / TEMPERATURE, dim=1)
    model.train()
    for _ in range(steps):
        batch = torch.randint(len(images), (min(batch_size, len(images)),), generator=generator)
        student = F.log_softmax(model(images[batch]) / TEMPERATURE, dim=1)
        loss = F.kl_div(student, soft_targets[batch], log_target=True, reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        (loss * TEMPERATURE**2).backward()
        if on_step is not None:
            on_step(model)
        optimizer.step()
    # the running statistics averaged over the steps lag behind the weights that moved
    return adapt_bn(model, images, batch_size)
