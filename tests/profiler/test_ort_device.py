"""ONNX Runtime on a GPU provider: inputs and output bound on the device, none copied
inside the timed call. The CUDA part runs where ORT has the CUDA provider and skips with
the reason elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttmpd.profiler import BackendConfig, UnitConfig, build_unit, get_backend
from ttmpd.profiler.backends.ort import bind_inputs, export_onnx, ort_device, ort_session

ort = pytest.importorskip("onnxruntime")
CUDA = "CUDAExecutionProvider"
UNIT = UnitConfig("conv", 1, 8, 8, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1)


def test_gpu_providers_bind_on_the_configured_device():
    assert ort_device(BackendConfig()) == ("cpu", 0)
    assert ort_device(BackendConfig(provider=CUDA, device=1)) == ("cuda", 1)
    assert ort_device(BackendConfig(provider="TensorrtExecutionProvider", device=2)) == (
        "cuda", 2,
    )  # fmt: skip


def _run_bound(config: BackendConfig) -> tuple[np.ndarray, np.ndarray, object]:
    module, inputs = build_unit(UNIT)
    session = ort_session(export_onnx(module.eval(), inputs), config)
    binding = bind_inputs(session, config, inputs)
    session.run_with_iobinding(binding)
    out = binding.get_outputs()[0]
    with torch.no_grad():
        expected = module(*inputs).numpy()
    return out.numpy(), expected, out


def test_cpu_binding_computes_the_unit():
    got, expected, out = _run_bound(BackendConfig())
    assert out.device_name() == "cpu"
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_cuda_binding_keeps_input_and_output_on_the_gpu():
    if CUDA not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no {CUDA} here (CPU build or no GPU)")
    config = BackendConfig(provider=CUDA, device=0)
    got, expected, out = _run_bound(config)
    assert out.device_name() == "cuda"  # the output stayed on the GPU
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    backend = get_backend("onnxruntime", config)
    assert backend.fingerprint().gpu.startswith("cuda:0")
    assert backend.measure(UNIT).median_ms > 0
