"""``torch-cuda``: eager PyTorch on a CUDA device, timed with CUDA events.

The caller's module is never moved: a copy goes to the configured device. Events are
recorded on that device's current stream. The fingerprint records the device index, its
name, compute capability, the driver, CUDA and cuDNN versions.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._device import cuda_unavailable_reason, on_device
from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._timing import Runner
from ._base import BACKENDS, BackendBase


@BACKENDS.register
class TorchCUDABackend(BackendBase):
    """Eager PyTorch on CUDA. Each sample is bracketed by CUDA events and synchronised."""

    name = "torch-cuda"
    fusion = "none"

    @property
    def compute_device(self) -> str:
        return f"cuda:{self.config.device}"

    def unavailable_reason(self) -> str:
        return cuda_unavailable_reason(self.config.device)

    def fingerprint(self) -> DeviceFingerprint:
        available = self.is_available()
        name = torch.cuda.get_device_name(self.config.device) if available else ""
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=(*library_versions("torch"), ("cuda", str(torch.version.cuda))),
            gpu_name=name,
            gpu=gpu_description(self.config.device) if available else "",
        )

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        device = torch.device("cuda", self.config.device)
        module = on_device(module, device)  # the caller's model stays where it is
        inputs = tuple(t.to(device) for t in inputs)
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
        stream = torch.cuda.current_stream(device)

        def run(number: int) -> float:
            with torch.inference_mode(), torch.cuda.device(device):
                torch.cuda.synchronize(device)
                start.record(stream)
                for _ in range(number):
                    module(*inputs)
                end.record(stream)
                torch.cuda.synchronize(device)
            return float(start.elapsed_time(end))

        return run


def gpu_description(device: int) -> str:
    """``cuda:IDX NAME sm_XY; driver D; cuda C; cudnn N`` of one visible device."""
    props = torch.cuda.get_device_properties(device)
    try:
        driver = str(torch._C._cuda_getDriverVersion())
    except (AttributeError, RuntimeError):
        driver = "unknown"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return (
        f"cuda:{device} {props.name} sm_{props.major}{props.minor}; driver {driver}; "
        f"cuda {torch.version.cuda}; cudnn {cudnn}"
    )
