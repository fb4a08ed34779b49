"""Writing a pruning result: model, plan, candidate log, summary."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import torch

from .._io import atomic_path
from ..models import save_checkpoint
from ._problem import PruneResult

logger = logging.getLogger(__name__)


def save_prune_result(
    result: PruneResult,
    out_dir: str | os.PathLike,
    example_input: torch.Tensor,
    *,
    normalization=None,
    num_classes: int | None = None,
    measured_ms: float | None = None,
    extra: dict | None = None,
) -> dict:
    """Write ``out_dir/{model.pt, model.pt2, plan.json, candidates.csv, summary.json}``.

    * ``model.pt``: a ttmpd checkpoint (whole module), loaded by ``ttmpd`` commands;
    * ``model.pt2``: a ``torch.export`` program — plain PyTorch loads it with
      ``torch.export.load("model.pt2").module()``, no ttmpd needed;
    * ``plan.json``: kept channel indices per group; re-applies to a fresh original model
      with :func:`ttmpd.pruning.apply_plan`.

    Returns the summary (also written as JSON). Every file is written atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out / "model.pt",
        result.model,
        input_shape=tuple(example_input.shape[1:]),
        num_classes=num_classes,
        normalization=normalization,
        metadata={"pruned_by": result.method, "plan": "plan.json"},
    )
    exported = None
    try:
        program = torch.export.export(result.model.eval(), (example_input,))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        with atomic_path(out / "model.pt2") as tmp:
            tmp.write_bytes(buffer.getvalue())
        exported = "model.pt2"
    except Exception as exc:  # export support varies by model; the checkpoint is enough
        logger.warning("torch.export of the pruned model failed (%s); wrote model.pt only", exc)
    result.plan.to_json(out / "plan.json")
    with atomic_path(out / "candidates.csv") as tmp:
        result.log.to_csv(tmp, index=False)
    summary = {
        "method": result.method,
        "budget": result.target_latency_ms / result.base_latency_ms,
        "base_latency_ms": result.base_latency_ms,
        "target_latency_ms": result.target_latency_ms,
        "predicted_latency_ms": result.predicted_latency_ms,
        "measured_latency_ms": measured_ms,
        "measured_vs_predicted_pct": None
        if measured_ms is None
        else 100 * (measured_ms / result.predicted_latency_ms - 1),
        "candidates_evaluated": len(result.log),
        "search_s": result.search_s,
        "removed_fraction": result.plan.removed_fraction,
        "files": {
            "model": "model.pt",
            "exported": exported,
            "plan": "plan.json",
            "log": "candidates.csv",
        },
        **(extra or {}),
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
