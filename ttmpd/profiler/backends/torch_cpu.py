"""``torch-cpu``: eager PyTorch on the CPU, ``inference_mode``, fixed thread count."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from functools import cache

import torch
from torch import nn

from .._extract import ATTENTION_PARTS
from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._rules import DeviceRules, infer_native_rule
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
    """Eager PyTorch on CPU. Units are single ATen ops (no fusion); attention is one unit
    where this torch build runs it as one kernel (:func:`attention_runs_fused`)."""

    name = "torch-cpu"

    @property
    def fusion(self) -> str:  # type: ignore[override]
        set_torch_threads(self.config.threads, self.config.inter_op_threads)
        return "none" if attention_runs_fused() else "none" + ATTENTION_PARTS

    def unavailable_reason(self) -> str:
        return ""

    def fingerprint(self) -> DeviceFingerprint:
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=library_versions("torch", "numpy"),
            extra_info=(
                ("torch_parallel", torch.__config__.parallel_info().splitlines()[0]),
                ("omp_wait_policy", os.environ.get("OMP_WAIT_POLICY", "")),
            ),
        )

    def probe_rules(self) -> DeviceRules:
        """The native-conv dispatch rule of this torch build on this device, read from the
        ATen ops each probe conv runs (:func:`conv_runs_native`,
        :func:`~ttmpd.profiler._rules.infer_native_rule`)."""
        set_torch_threads(self.config.threads, self.config.inter_op_threads)
        start = time.perf_counter()
        with _quiet_stderr():
            rule = infer_native_rule(conv_runs_native, self.config.threads)
        streaming = self.probe_streaming()
        return DeviceRules(
            native=rule,
            probe_seconds=time.perf_counter() - start,
            call_overhead_ms=self.probe_call_overhead_ms(),
            streaming=streaming,
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


@cache
def attention_runs_fused() -> bool:
    """Whether eager PyTorch runs ``scaled_dot_product_attention`` as one kernel: the ATen
    ops of one call, as the autograd profiler records them, hold no separate softmax (the
    math fallback runs matmul, softmax, matmul)."""
    q = torch.randn(1, 2, 8, 16)
    with (
        _quiet_stderr(),
        torch.inference_mode(),
        torch.autograd.profiler.profile(use_kineto=False) as prof,
    ):
        nn.functional.scaled_dot_product_attention(q, q, q)
    return not any("softmax" in e.name for e in prof.function_events)


def conv_runs_native(c_in: int, hw: int, kernel: int, batch: int, groups: int) -> bool:
    """Whether eager PyTorch runs this conv (``c_in -> 8·groups``, stride 1, same padding)
    on its native ``slow_conv2d`` path: the ATen ops of one call, as the autograd profiler
    records them, include ``_slow_conv2d_forward``."""
    conv = nn.Conv2d(c_in, 8 * groups, kernel, padding=kernel // 2, groups=groups).eval()
    x = torch.randn(batch, c_in, hw, hw)
    with torch.inference_mode(), torch.autograd.profiler.profile(use_kineto=False) as prof:
        conv(x)
    return any("slow_conv2d" in e.name for e in prof.function_events)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's native start/stop lines) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
