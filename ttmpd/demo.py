"""``ttmpd demo``: the embedded default scenario, run with the stages that exist so far.

Stages today (the pipeline grows as the pruning and distillation stages land):

1. the test-time stream: the embedded MNIST test split under a corruption
   (``motion_blur``, severity 5: the shipped model keeps ~76% accuracy), written as
   ``stream.npz`` with a preview PNG of all corruptions;
2. device latency tables of the shipped ResNet-20 (``ttmpd/models/resnet20_mnist.pt``, 1
   input channel, 28x28) for every available CPU backend, built (or resumed) with channel
   step 8;
3. for each table: the unpruned model's measured end-to-end latency beside the plain sum
   of its LUT entries, the gap the latency predictor will calibrate away.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from .lut import profile_model
from .profiler import BackendConfig, GridConfig, extract_units, get_backend

DEMO_BACKENDS = ("torch-cpu", "onnxruntime")


@dataclass(frozen=True)
class DemoBackendResult:
    backend: str
    lut_path: Path
    rows: int
    measured: int
    profile_s: float
    model_ms: float
    lut_sum_ms: float


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    stream_path: Path
    preview_path: Path
    backends: tuple[DemoBackendResult, ...]


def run_demo(out_dir: str | Path = "runs/demo", progress: bool = True) -> DemoResult:
    """Run the demo into ``out_dir`` (re-running resumes: finished tables are reused)."""
    from .data import load_mnist, make_stream, save_preview

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream_path = out / "stream.npz"
    if not stream_path.exists():
        make_stream("mnist", "motion_blur", 5, 0, stream_path)
    preview_path = out / "corruptions.png"
    if not preview_path.exists():
        save_preview(load_mnist("test").images[0], preview_path, title="MNIST test stream")

    from .base import reference_checkpoint_path
    from .models import load_checkpoint

    model = load_checkpoint(reference_checkpoint_path()).model.eval()
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    results = []
    for name in DEMO_BACKENDS:
        backend = get_backend(name, BackendConfig(threads=1))
        if not backend.is_available():
            continue
        lut_path = out / f"lut-resnet20-{name}.parquet"
        profiled = profile_model(
            model, x, backend, lut_path, grid=GridConfig(channel_step=8), resume=True,
            model_name="resnet20-mnist", progress=progress,
        )  # fmt: skip
        table = profiled.table
        units = extract_units(model, x, backend.fusion).units
        lut_sum = sum(table.lookup(u.config) or 0.0 for u in units)
        results.append(
            DemoBackendResult(
                backend=name,
                lut_path=lut_path,
                rows=len(table),
                measured=profiled.measured,
                profile_s=profiled.wall_s,
                model_ms=backend.measure_model(model, x).median_ms,
                lut_sum_ms=lut_sum,
            )
        )
    return DemoResult(out, stream_path, preview_path, tuple(results))


def as_dict(result: DemoResult) -> dict:
    return dataclasses.asdict(result)
