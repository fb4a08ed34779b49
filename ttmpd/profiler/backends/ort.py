"""``onnxruntime``: each unit exported to a small ONNX graph and run in an InferenceSession.

Export uses PyTorch's TorchScript-based ONNX exporter (``dynamo=False``): it is fast for
small graphs and needs no extra dependency. Sessions pin intra-/inter-op threads, run
sequentially, and use the configured execution provider and graph optimisation level, so a
unit is optimised exactly as it would be inside a whole model (Conv+BN+activation fusion,
see :mod:`ttmpd.profiler._extract`). Inputs are bound once with IOBinding to keep Python
overhead out of the samples.
"""

from __future__ import annotations

import io
import time
import warnings

import torch
from torch import nn

from ...errors import InputError
from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._timing import Runner
from ._base import BACKENDS, BackendBase, BackendConfig


def export_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], opset: int = 17) -> bytes:
    """Serialise ``module(*inputs)`` to ONNX bytes (inputs ``x0..xn``, output ``y``)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[f"x{i}" for i in range(len(inputs))],
            output_names=["y"],
        )
    return buffer.getvalue()


def ort_session(model_bytes: bytes, config: BackendConfig):
    """An ``onnxruntime.InferenceSession`` configured from ``config``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.threads
    opts.inter_op_num_threads = config.inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[config.graph_optimization]
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=[config.provider])


@BACKENDS.register
class OnnxRuntimeBackend(BackendBase):
    """ONNX Runtime with a selectable execution provider (CPU by default)."""

    name = "onnxruntime"
    fusion = "conv-bn-act"

    def unavailable_reason(self) -> str:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed; pip install onnxruntime"
        available = ort.get_available_providers()
        if self.config.provider not in available:
            return (
                f"execution provider {self.config.provider} is not available "
                f"(available: {', '.join(available)})"
            )
        return ""

    def fingerprint(self) -> DeviceFingerprint:
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=library_versions("onnxruntime", "onnx", "torch"),
            provider=self.config.provider,
            graph_optimization=self.config.graph_optimization,
            extra_info=(("opset", str(self.config.opset)),),
        )

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        try:
            model_bytes = export_onnx(module, inputs, self.config.opset)
        except Exception as exc:  # the exporter raises many types; report one line
            raise InputError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc
        session = ort_session(model_bytes, self.config)
        binding = session.io_binding()
        for i, t in enumerate(inputs):
            binding.bind_cpu_input(f"x{i}", t.detach().cpu().numpy())
        binding.bind_output("y")

        def run(number: int) -> float:
            start = time.perf_counter()
            for _ in range(number):
                session.run_with_iobinding(binding)
            return (time.perf_counter() - start) * 1e3

        return run
