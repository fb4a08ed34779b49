"""Glue shared by the commands that chain stages (prune, pareto, run): loading a checkpoint
and its test stream, getting a predictor, measuring on the table's device.

This is the one module that imports several stages; stage packages never import it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .lut import (
    LatencyPredictor,
    LatencyTable,
    backend_for_table,
    load_predictor,
    recheck_table,
)
from .models import Checkpoint, load_checkpoint
from .pruning import calibrate_predictor, measure_models

logger = logging.getLogger(__name__)


def split_mask(n: int, k: int, seed: int) -> np.ndarray:
    """Boolean mask of ``k`` of ``n`` stream positions drawn at random (seeded): the
    unlabeled proxy / fine-tuning images; the rest is held out."""
    pick = np.zeros(n, dtype=bool)
    pick[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    return pick


@dataclass(frozen=True)
class Scenario:
    """A base checkpoint and its test stream: the proxy images ``(N, C, H, W)``, normalised,
    and the held-out rest."""

    checkpoint: Checkpoint
    images: torch.Tensor
    example: torch.Tensor
    held_out_images: np.ndarray
    held_out_labels: np.ndarray | None

    def evaluate(self, model: nn.Module) -> float:
        """Accuracy on the held-out part of the stream (needs labels)."""
        from .base import evaluate

        if self.held_out_labels is None:
            raise InputError("the test stream has no labels; accuracy needs labels")
        return evaluate(model, self.held_out_images, self.held_out_labels,
                        self.checkpoint.normalization)  # fmt: skip


def load_scenario(model_path: str, data: str, samples: int, seed: int = 0) -> Scenario:
    """Split the stream into ``samples`` proxy images (random, seeded) and the rest."""
    from .base import check_input_channels, to_model_input

    if samples < 8:
        raise InputError(f"--proxy-samples must be >= 8, got {samples}")
    checkpoint = load_checkpoint(model_path)
    from .data import load_stream

    stream = load_stream(data)  # labels, when present, are for evaluation only
    check_input_channels(checkpoint.model, stream.images)
    n = len(stream.images)
    if samples >= n:
        raise InputError(f"--proxy-samples {samples} must be below the stream size {n}")
    pick = split_mask(n, samples, seed)
    images = to_model_input(stream.images[pick], checkpoint.normalization)
    labels = None if stream.labels is None else stream.labels[~pick]
    return Scenario(checkpoint, images, images[:1].clone(), stream.images[~pick], labels)


def load_proxy_images(
    model_path: str, data: str, samples: int, seed: int = 0
) -> tuple[Checkpoint, torch.Tensor, torch.Tensor]:
    """``(checkpoint, proxy images (N, C, H, W) normalised, example input (1, C, H, W))``."""
    s = load_scenario(model_path, data, samples, seed)
    return s.checkpoint, s.images, s.example


def load_predictor_for(
    lut: str | None,
    predictor_path: str | None,
    model: nn.Module,
    example: torch.Tensor,
    calibrate_variants: int = 0,
) -> tuple[LatencyPredictor, LatencyTable]:
    """A fitted predictor from a saved file or a LUT (calibrated on request)."""
    if predictor_path:
        return load_predictor(predictor_path)
    table = LatencyTable.load(lut)
    predictor = LatencyPredictor().fit(table)
    if calibrate_variants:
        check = recheck_table(table)  # ~1 s: the calibration cannot fix rows drifted apart
        if check.verdict == "inconsistent":
            logger.warning(
                "%s: re-measured rows moved by different factors (p75/p25 of now/stored: "
                "%.2f); predictions of pruned models may be off; re-profile the table "
                "(ttmpd lut check %s)", lut, 1 + check.spread, lut,
            )  # fmt: skip
        calibrate_predictor(predictor, model, example, backend_for_table(table),
                            calibrate_variants, progress=True)  # fmt: skip
    return predictor, table


def compute_device_for(table: LatencyTable) -> str:
    """Where search and fine-tuning for the table's target compute: its backend's
    ``compute_device`` (``cuda:N`` for ``torch-cuda`` or a CUDA provider, else ``cpu``)."""
    return backend_for_table(table).compute_device


def measure_on_table_backend(table: LatencyTable, model: nn.Module, example) -> float:
    """End-to-end latency (ms) of ``model`` on the backend the table was built on: the
    median of 3 measurements, as the calibration measures (one burst of load on a shared
    host then cannot decide the reported number)."""
    return measure_models([(model, example)], backend_for_table(table), rounds=3)[0]


def sweep_identity(
    model_path: str,
    data: str,
    table_path: str,
    proxy_samples: int,
    calibrate_variants: int,
    seed: int,
) -> dict[str, object]:
    """What makes a sweep's rows comparable: file digests of the model and the table or
    predictor, the stream and the split. A sweep journal of another identity is refused."""
    from ._io import file_digest

    data_id = file_digest(data) if Path(data).is_file() else data
    return {"model": file_digest(model_path), "data": data_id,
            "latency": file_digest(table_path), "proxy_samples": proxy_samples,
            "calibrate_variants": calibrate_variants, "seed": seed}  # fmt: skip
