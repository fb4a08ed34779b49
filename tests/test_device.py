"""The compute device: spelling, host checks, backends' devices, and the pipeline passing the
backend's device to search and distillation. The GPU runs skip without a CUDA device."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ttmpd._device import check_device_spec, cuda_unavailable_reason, on_device, resolve_device
from ttmpd.distill import CacheConfig, DistillConfig
from ttmpd.errors import InputError
from ttmpd.pipeline import RunConfig, _stages
from ttmpd.profiler import BackendConfig, get_backend
from ttmpd.pruning import SearchConfig

NO_CUDA = cuda_unavailable_reason(0)
needs_cuda = pytest.mark.skipif(bool(NO_CUDA), reason=f"no CUDA device: {NO_CUDA}")


@pytest.mark.parametrize("spec", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_spellings_accepted(spec):
    check_device_spec(spec)


@pytest.mark.parametrize("spec", ["gpu", "cpu:0", "cuda:", "cuda:x", "CUDA", "", 3, None])
def test_device_misspellings_refused_by_every_config(spec):
    with pytest.raises(InputError, match="device must be"):
        check_device_spec(spec)
    for make in (lambda: SearchConfig(budget=0.5, device=spec),
                 lambda: DistillConfig(device=spec), lambda: CacheConfig(device=spec)):  # fmt: skip
        with pytest.raises(InputError, match="device must be"):
            make()


def test_a_missing_gpu_is_one_line_naming_it():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="device cuda:99: ") as err:
        resolve_device("cuda:99")
    assert "\n" not in str(err.value)


def test_a_model_already_on_the_device_is_not_copied():
    model = nn.Linear(2, 2)
    assert on_device(model, torch.device("cpu")) is model


@pytest.mark.parametrize(
    ("name", "config", "expected"),
    [
        ("torch-cpu", BackendConfig(), "cpu"),
        ("fake", BackendConfig(), "cpu"),
        ("onnxruntime", BackendConfig(), "cpu"),
        ("torch-cuda", BackendConfig(device=2), "cuda:2"),
        ("onnxruntime", BackendConfig(provider="CUDAExecutionProvider", device=1), "cuda:1"),
    ],
)
def test_each_backend_names_where_its_work_computes(name, config, expected):
    assert get_backend(name, config).compute_device == expected


def test_resuming_on_another_device_keeps_the_distill_signature():
    assert DistillConfig(device="cpu").signature() == DistillConfig(device="cuda:1").signature()


def test_runs_recorded_before_the_device_field_still_resume():
    old = RunConfig(model="m.pt", data="mnist").signature()
    assert "device" not in old
    assert RunConfig(model="m.pt", data="mnist", device=1).signature()["device"] == 1


class _Captured(Exception):
    pass


def _fake_run(tmp_path, device: str):
    """A Run whose inputs are set in place (no files) and whose backend computes on
    ``device``."""
    run = _stages.Run(RunConfig(model="m.pt", data="mnist", budget_checks=0), tmp_path)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    run.__dict__.update(
        checkpoint=SimpleNamespace(model=model, normalization=None, num_classes=10),
        finetune_images=np.zeros((16, 28, 28, 1), np.uint8),
        example=torch.zeros(1, 1, 28, 28),
        predictor=None,
        backend=SimpleNamespace(compute_device=device),
    )
    run.load = lambda relative: model
    return run


def test_the_prune_stage_searches_on_the_backends_device(tmp_path, monkeypatch):
    import ttmpd.pruning

    seen = {}

    class FakeSearch:
        def __init__(self, model, example, predictor, images, config):
            seen["device"] = config.device

        def __call__(self, budget):
            raise _Captured

    monkeypatch.setattr(ttmpd.pruning, "BudgetSearch", FakeSearch)
    state = SimpleNamespace(stages={"predictor": {"measured_original_ms": 1.0,
                                                  "predicted_original_ms": 1.0}})  # fmt: skip
    with pytest.raises(_Captured):
        _stages.stage_prune(_fake_run(tmp_path, "cuda:3"), state)
    assert seen["device"] == "cuda:3"


def test_the_distill_stage_trains_on_the_backends_device(tmp_path, monkeypatch):
    seen = {}

    def fake_distill(teacher, student, images, to_input, config, out_dir=None, **kw):
        seen["device"] = config.device
        raise _Captured

    monkeypatch.setattr(_stages, "distill_student", fake_distill)
    with pytest.raises(_Captured):
        _stages.stage_distill(_fake_run(tmp_path, "cuda:2"))
    assert seen["device"] == "cuda:2"


# ----- on a GPU ----------------------------------------------------------------------------


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    ).eval()  # fmt: skip


@needs_cuda
def test_prune_on_the_gpu_leaves_the_callers_model_and_returns_a_cpu_model(tmp_path):
    from ttmpd.lut import LatencyPredictor, profile_model
    from ttmpd.pruning import prune

    model, x = _tiny_cnn(), torch.randn(1, 3, 16, 16)
    images = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = profile_model(model, x, get_backend("fake"), tmp_path / "t.parquet",
                          progress=False).table  # fmt: skip
    predictor = LatencyPredictor().fit(table)
    for method in ("ttmpd", "halp", "netadapt"):
        result = prune(
            model,
            x,
            predictor,
            images,
            SearchConfig(budget=0.6, method=method, device="cuda", progress=False),
        )
        assert all(p.device.type == "cpu" for p in result.model.parameters()), method
        assert result.predicted_latency_ms <= result.target_latency_ms * 1.0001, method
        assert torch.isfinite(result.model(x)).all(), method
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@needs_cuda
def test_distill_on_the_gpu_trains_the_student_and_hands_it_back_on_the_cpu():
    from ttmpd.distill import SelectionConfig, TeacherCache, distill

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(64, 16, 16, 3), dtype=np.uint8)

    def to_input(batch):
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255

    teacher, student = _tiny_cnn(), _tiny_cnn()
    cache = TeacherCache.build(teacher, images, to_input, selection=SelectionConfig(size=64),
                               config=CacheConfig(device="cuda"))  # fmt: skip
    config = DistillConfig(epochs=3, batch_size=16, progress=False, device="cuda")
    result = distill(teacher, student, cache, to_input, config,
                     eval_data=(images, np.zeros(64, np.int64)))  # fmt: skip
    assert result.student is student
    assert all(p.device.type == "cpu" for p in student.parameters())
    assert all(p.device.type == "cpu" for p in teacher.parameters())
    losses = result.history["loss"].to_numpy()
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
