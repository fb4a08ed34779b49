"""Exporting the final model to ONNX, checked against PyTorch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._io import atomic_path
from ..errors import OutputError

#: Largest tolerated |ONNX Runtime - PyTorch| logit difference, relative to the logit range.
REL_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportCheck:
    """How ONNX Runtime's outputs compare with PyTorch's on ``samples`` inputs."""

    path: Path
    samples: int
    max_abs_diff: float
    max_rel_diff: float
    argmax_agreement: float


def export_checked_onnx(
    model: nn.Module, example_inputs: torch.Tensor, path: str | os.PathLike
) -> ExportCheck:
    """Write ``model`` as ONNX (batch size 1, input ``x0``, output ``y``) and run every row
    of ``example_inputs`` ``(N, C, H, W)`` through both ONNX Runtime and PyTorch.

    ``max_rel_diff = max |y_ort - y_torch| / (max y_torch - min y_torch)``; above
    :data:`REL_TOLERANCE` raises :class:`OutputError` and nothing is written.
    """
    from ..profiler import BackendConfig
    from ..profiler.backends.ort import export_onnx, ort_session

    model = model.eval()
    blob = export_onnx(model, (example_inputs[:1],))
    session = ort_session(blob, BackendConfig(threads=1))
    with torch.no_grad():
        reference = model(example_inputs).numpy()
    outputs = np.concatenate(
        [session.run(None, {"x0": x[None].numpy()})[0] for x in example_inputs]
    )
    diff = float(np.abs(outputs - reference).max())
    span = float(reference.max() - reference.min()) or 1.0
    check = ExportCheck(
        Path(path), len(example_inputs), diff, diff / span,
        float((outputs.argmax(1) == reference.argmax(1)).mean()),
    )  # fmt: skip
    if check.max_rel_diff > REL_TOLERANCE:
        raise OutputError(
            f"ONNX Runtime's outputs differ from PyTorch's by {diff:.3g} ({check.max_rel_diff:.2g} "
            f"of the logit range); the ONNX file was not written — report this model"
        )
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    return check
