"""PyTorch's intra-op thread count for a block of work, restored afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)`` (None: leave it); yields the
    count in force. Every torch stage of a job (proxies, adaptive BN, distillation,
    evaluation) runs inside one, so ``--threads`` governs them all, not only the backend."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
