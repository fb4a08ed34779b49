"""Where models compute: the torch device of search, adaptive BN, distillation, evaluation.

A *compute device* is a string ``"cpu"``, ``"cuda"`` (device 0) or ``"cuda:N"``.
:func:`resolve_device` checks it against this host and returns the ``torch.device``;
:func:`cuda_unavailable_reason` says in one line why a CUDA device cannot be used. Models a
caller passes in are never moved: work happens on copies (:func:`on_device`), and results
come back on the caller's device. Shared by the profiler's ``torch-cuda`` backend, pruning
and distillation, so it sits outside all three.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import torch
from torch import nn

from .errors import InputError

_SPEC = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def cuda_unavailable_reason(device: int = 0) -> str:
    """Empty when CUDA device ``device`` can be used, else why not (one line)."""
    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is a CPU-only build; install a CUDA build of torch "
            "to run on a GPU"
        )
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    if device >= torch.cuda.device_count():
        return f"CUDA device {device} does not exist ({torch.cuda.device_count()} visible)"
    return ""


def check_device_spec(spec: str) -> None:
    """InputError unless ``spec`` reads ``cpu``, ``cuda`` or ``cuda:N`` (no host check)."""
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise InputError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {spec!r}")


def resolve_device(spec: str) -> torch.device:
    """The ``torch.device`` of ``spec``; InputError (one line) when this host lacks it."""
    check_device_spec(spec)
    if spec == "cpu":
        return torch.device("cpu")
    index = int(spec.partition(":")[2] or 0)
    reason = cuda_unavailable_reason(index)
    if reason:
        raise InputError(f"device {spec}: {reason}")
    return torch.device("cuda", index)


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter or buffer (CPU for a stateless module)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def on_device(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` itself when it already lives on ``device``, else a copy moved there: the
    caller's module never moves."""
    if module_device(module) == device:
        return module
    return copy.deepcopy(module).to(device)


def input_on(
    to_input: Callable[..., torch.Tensor], device: torch.device
) -> Callable[..., torch.Tensor]:
    """``to_input`` followed by a copy to ``device`` (the identity on CPU inputs for CPU)."""
    if device.type == "cpu":
        return to_input

    def moved(images) -> torch.Tensor:
        return to_input(images).to(device, non_blocking=True)

    return moved


__all__ = [
    "check_device_spec",
    "cuda_unavailable_reason",
    "input_on",
    "module_device",
    "on_device",
    "resolve_device",
]
