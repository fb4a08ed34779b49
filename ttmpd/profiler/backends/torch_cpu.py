"""``torch-cpu``: eager PyTorch on the CPU, ``inference_mode``, fixed thread count."""

from __future__ import annotations

import contextlib
import time

import torch
from torch import nn

from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._timing import Runner
from ._base import BACKENDS, BackendBase


def set_torch_threads(threads: int, inter_op_threads: int) -> None:
    """Pin PyTorch's intra-op threads; inter-op threads can only be set once per process."""
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != inter_op_threads:
        with contextlib.suppress(RuntimeError):  # already started: recorded as requested
            torch.set_num_interop_threads(inter_op_threads)


@BACKENDS.register
class TorchCPUBackend(BackendBase):
    """Eager PyTorch on CPU. Units are single ATen ops (no fusion)."""

    name = "torch-cpu"
    fusion = "none"

    def unavailable_reason(self) -> str:
        return ""

    def fingerprint(self) -> DeviceFingerprint:
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=library_versions("torch", "numpy"),
            extra_info=(("torch_parallel", torch.__config__.parallel_info().splitlines()[0]),),
        )

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        set_torch_threads(self.config.threads, self.config.inter_op_threads)

        def run(number: int) -> float:
            with torch.inference_mode():
                start = time.perf_counter()
                for _ in range(number):
                    module(*inputs)
                return (time.perf_counter() - start) * 1e3

        return run
