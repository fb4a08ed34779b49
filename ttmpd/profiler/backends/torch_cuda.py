"""``torch-cuda``: eager PyTorch on a CUDA device, timed with CUDA events."""

from __future__ import annotations

import torch
from torch import nn

from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._timing import Runner
from ._base import BACKENDS, BackendBase


def cuda_unavailable_reason(device: int = 0) -> str:
    """Empty when CUDA device ``device`` can be used, else why not (one line)."""
    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is a CPU-only build; install a CUDA build of torch "
            "to profile on a GPU"
        )
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    if device >= torch.cuda.device_count():
        return f"CUDA device {device} does not exist ({torch.cuda.device_count()} visible)"
    return ""


@BACKENDS.register
class TorchCUDABackend(BackendBase):
    """Eager PyTorch on CUDA. Each sample is bracketed by CUDA events and synchronised."""

    name = "torch-cuda"
    fusion = "none"

    def unavailable_reason(self) -> str:
        return cuda_unavailable_reason(self.config.device)

    def fingerprint(self) -> DeviceFingerprint:
        gpu = torch.cuda.get_device_name(self.config.device) if self.is_available() else ""
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=(*library_versions("torch"), ("cuda", str(torch.version.cuda))),
            gpu_name=gpu,
        )

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        device = torch.device("cuda", self.config.device)
        module = module.to(device)
        inputs = tuple(t.to(device) for t in inputs)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def run(number: int) -> float:
            with torch.inference_mode():
                torch.cuda.synchronize(device)
                start.record()
                for _ in range(number):
                    module(*inputs)
                end.record()
                torch.cuda.synchronize(device)
            return float(start.elapsed_time(end))

        return run
