"""Measurement targets behind one :class:`Backend` protocol.

Registered names: ``torch-cpu``, ``torch-cuda``, ``onnxruntime``, ``openvino``, ``fake``
(deterministic, for tests). Heavy optional imports (onnxruntime, openvino) happen inside the
backend, not here.
"""

from . import fake as _fake
from . import openvino as _openvino
from . import ort as _ort
from . import torch_cpu as _torch_cpu
from . import torch_cuda as _torch_cuda
from ._base import BACKENDS as BACKENDS
from ._base import Backend as Backend
from ._base import BackendBase as BackendBase
from ._base import BackendConfig as BackendConfig
from ._base import get_backend as get_backend
from .fake import fake_latency_ms as fake_latency_ms
from .openvino import probe_openvino_fusion as probe_openvino_fusion
from .ort import export_onnx as export_onnx
from .ort import ort_session as ort_session
from .ort import probe_fusion as probe_fusion
from .torch_cuda import cuda_unavailable_reason as cuda_unavailable_reason

del _fake, _openvino, _ort, _torch_cpu, _torch_cuda

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendBase",
    "BackendConfig",
    "cuda_unavailable_reason",
    "export_onnx",
    "fake_latency_ms",
    "get_backend",
    "ort_session",
    "probe_fusion",
    "probe_openvino_fusion",
]
