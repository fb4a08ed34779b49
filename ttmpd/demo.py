"""``ttmpd demo``: ``ttmpd run`` on the embedded default scenario.

* the test-time stream: the embedded MNIST test split (4,000 images) under motion blur,
  severity 5 (the shipped model keeps ~75% accuracy), written as ``stream.npz`` with a
  preview PNG of every corruption;
* the base model: the shipped ResNet-20 (``ttmpd/models/resnet20_mnist.pt``, 1 input
  channel, 28x28, trained on the clean training split);
* the job: ONNX Runtime CPU (1 thread), budget 0.5 of the measured latency, ttmpd's search,
  512 unlabeled stream images for pruning and distillation, the rest held out.

Re-running continues (or just re-reports) the run in the same folder.
"""

from __future__ import annotations

from pathlib import Path

from .pipeline import RunConfig, RunState, run_pipeline
from .pipeline._state import STATE_FILE

DEMO_CORRUPTION = ("motion_blur", 5)


def demo_config(stream_path: str | Path, progress: bool = True) -> RunConfig:
    from .base import reference_checkpoint_path

    return RunConfig(model=str(reference_checkpoint_path()), data=str(stream_path),
                     backend="onnxruntime", budget=0.5, progress=progress)  # fmt: skip


def run_demo(out_dir: str | Path = "runs/demo", progress: bool = True, on_stage=None) -> RunState:
    """Write the stream and its preview into ``out_dir``, then run the pipeline there."""
    from .data import load_mnist, make_stream, save_preview

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream_path = out / "stream.npz"
    if not stream_path.exists():
        make_stream("mnist", *DEMO_CORRUPTION, 0, stream_path)
    preview_path = out / "corruptions.png"
    if not preview_path.exists():
        save_preview(load_mnist("test").images[0], preview_path, title="MNIST test stream")
    config = demo_config(stream_path, progress)
    resume = (out / STATE_FILE).exists()
    return run_pipeline(config, out, resume=resume, on_stage=on_stage)
