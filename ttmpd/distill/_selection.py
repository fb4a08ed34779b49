"""Choosing the fine-tuning subset of an unlabeled test stream.

The teacher examines the stream in a seeded random order, batch by batch, and a selector
accepts samples until the subset is full, so every examined sample passes through the
teacher exactly once and the teacher stops as soon as the subset is complete:

- ``random``: accept everything (the first ``size`` samples of the random order; with
  outputs not cached, no teacher pass is needed at all);
- ``balanced``: at most ``ceil(size / C)`` samples per teacher pseudo label; if the stream
  runs out first, the rest is filled from rejected samples in examination order;
- ``reliable``: only samples whose teacher prediction entropy is below
  ``e_max = entropy_fraction * ln C`` (EATA's reliability filter, Niu et al. 2022, with
  ``entropy_fraction = 0.4``); fewer than ``size`` may exist, then the subset is smaller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

STRATEGIES = ("random", "balanced", "reliable")


@dataclass(frozen=True)
class SelectionConfig:
    """How to pick the fine-tuning subset (see the module docstring)."""

    strategy: str = "random"
    size: int = 512
    entropy_fraction: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"unknown selection {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}"
            )
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise InputError(f"subset size must be a positive integer, got {self.size!r}")
        if not 0 < self.entropy_fraction <= 1:
            raise InputError(
                f"entropy_fraction must be in (0, 1], got {self.entropy_fraction}; "
                "0.4 keeps predictions with entropy below 0.4 ln C"
            )


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Prediction entropy ``-sum p log p`` in nats, per row."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(1)


class Selector:
    """Streaming acceptance: ``offer(logits)`` returns a boolean mask of accepted rows."""

    def __init__(self, config: SelectionConfig, num_classes: int) -> None:
        self.config = config
        self.num_classes = num_classes
        self.quota = math.ceil(config.size / num_classes)
        self.counts = np.zeros(num_classes, dtype=np.int64)
        self.accepted = 0
        self.e_max = config.entropy_fraction * math.log(num_classes)

    @property
    def full(self) -> bool:
        return self.accepted >= self.config.size

    def offer(self, logits: torch.Tensor | None, n: int) -> np.ndarray:
        take = np.zeros(n, dtype=bool)
        strategy = self.config.strategy
        if strategy == "random":
            take[: max(0, self.config.size - self.accepted)] = True
        else:
            if logits is None:
                raise InputError(f"selection {strategy!r} needs teacher logits")
            labels = logits.argmax(1).numpy()
            reliable = (entropy(logits) < self.e_max).numpy()
            for i in range(n):
                if self.accepted + take.sum() >= self.config.size:
                    break
                if strategy == "reliable":
                    take[i] = reliable[i]
                elif self.counts[labels[i]] < self.quota:
                    take[i] = True
                    self.counts[labels[i]] += 1
        self.accepted += int(take.sum())
        return take
