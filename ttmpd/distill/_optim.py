"""Optimisers (sgd, adam, adamw) and per-step learning-rate schedules (cosine, step,
constant) for the trainer; schedules are ``LambdaLR`` so their state is resumable."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from ..errors import InputError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise InputError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def make_schedule(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """``cosine``: lr * (1 + cos(pi t / T)) / 2; ``step``: x0.1 at 50% and 75% of the steps;
    ``constant``. Stepped once per optimiser step.

    With ``warmup_steps = W > 0`` step ``s < W`` uses lr * (s + 1) / W, and the schedule
    then runs over the remaining ``T - W`` steps (``t = s - W``)."""
    if warmup_steps < 0:
        raise InputError(f"warmup steps must be >= 0, got {warmup_steps}")
    warmup = min(int(warmup_steps), max(0, total_steps - 1))
    main = _schedule_factor(name, max(1, total_steps - warmup))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return main(step - warmup)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _schedule_factor(name: str, total: int) -> Callable[[int], float]:
    if name == "cosine":

        def factor(step: int) -> float:
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    elif name == "step":

        def factor(step: int) -> float:
            return 0.1 ** ((step >= total // 2) + (step >= 3 * total // 4))
    elif name == "constant":

        def factor(step: int) -> float:
            return 1.0
    else:
        raise InputError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    return factor
