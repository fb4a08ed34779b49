"""Accuracy of a base model on the clean test stream and on every corruption x severity.

:func:`evaluate` is the one accuracy computation (batched, ``inference_mode``, inputs via
:func:`~ttmpd.base.inputs.to_model_input`); :func:`robustness_table` runs it on the clean
test split and on each corrupted copy (``ttmpd.data.corrupt``, seeded) and returns a
DataFrame with one row per (corruption, severity); the clean row has corruption ``"clean"``
and severity 0. :func:`summarize` reduces the table to clean accuracy and the mean over
corruptions per severity.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageDataset, corrupt, list_corruptions
from ..data.corruptions import SEVERITIES
from ..data.embedded import load_builtin
from ..errors import InputError
from ..models import Checkpoint, load_checkpoint
from .inputs import Normalization, check_input_channels, to_model_input

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

CLEAN = "clean"
COLUMNS = ("corruption", "severity", "accuracy", "n")
DEFAULT_BATCH_SIZE = 256


def predict(
    model: nn.Module,
    images: np.ndarray,
    normalization: Normalization | None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Predicted class indices ``int64 (N,)`` of ``uint8`` NHWC ``images``, in eval mode.

    Inputs are passed channels-last (faster CPU convolutions, same logits); the model's
    train/eval mode is restored afterwards.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_input_channels(model, images)
    was_training = model.training
    model.eval()
    out = np.empty(len(images), dtype=np.int64)
    try:
        with torch.inference_mode():
            for begin in range(0, len(images), batch_size):
                x = to_model_input(images[begin : begin + batch_size], normalization)
                x = x.contiguous(memory_format=torch.channels_last)
                out[begin : begin + len(x)] = model(x).argmax(1).numpy()
    finally:
        model.train(was_training)
    return out


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with channels-last weights (for repeated evaluation)."""
    return copy.deepcopy(model).eval().to(memory_format=torch.channels_last)


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    normalization: Normalization | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``uint8`` NHWC ``images`` with ``labels``."""
    if labels is None:
        raise InputError("evaluation needs labels; load the data with labels=True")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise InputError(
            f"got {len(images)} images and labels of shape {labels.shape}; give one label per image"
        )
    if len(labels) == 0:
        raise InputError("cannot evaluate on zero images")
    predicted = predict(model, images, normalization, batch_size=batch_size)
    return float(np.mean(predicted == labels))


def resolve_corruptions(spec: str | Sequence[str] | None) -> list[str]:
    """``None``/``"all"`` -> every corruption; ``"fog,contrast"`` or a list -> those, checked."""
    if spec is None or spec == "all":
        return list_corruptions()
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise InputError("no corruptions given; use 'all' or names like fog,contrast")
    known = set(list_corruptions())
    for name in names:
        if name not in known:
            raise InputError(
                f"unknown corruption {name!r}; choose from: {', '.join(list_corruptions())}"
            )
    return list(dict.fromkeys(names))


def resolve_severities(spec: str | Sequence[int] | None) -> list[int]:
    """``None`` -> 1..5; ``"3,5"`` or ``[3, 5]`` -> those, each checked to be in 1..5."""
    if spec is None:
        return list(SEVERITIES)
    if isinstance(spec, str):
        try:
            values = [int(p) for p in spec.split(",") if p.strip()]
        except ValueError:
            raise InputError(
                f"cannot parse severities {spec!r}; give integers in 1..5 like 3,5"
            ) from None
    else:
        values = list(spec)
    if not values:
        raise InputError("no severities given; use integers in 1..5 like 3,5")
    for value in values:
        valid = isinstance(value, int | np.integer) and not isinstance(value, bool)
        if not valid or not 1 <= value <= 5:
            raise InputError(f"severity {value!r} is out of range; use integers in 1..5")
    return sorted({int(v) for v in values})


def _as_checkpoint(checkpoint: Checkpoint | str | os.PathLike) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)


def _as_test_data(dataset: str | ImageDataset, limit: int | None) -> ImageDataset:
    data = load_builtin(dataset, "test") if isinstance(dataset, str) else dataset
    if not isinstance(data, ImageDataset):
        raise InputError(f"dataset must be 'mnist', 'digits' or an ImageDataset, got {data!r}")
    if data.labels is None:
        raise InputError(f"{data.name} has no labels; evaluation needs labeled test images")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InputError(f"limit must be a positive integer, got {limit!r}")
        data = data.subset(slice(0, limit))
    return data


def check_compatible(checkpoint: Checkpoint, data: ImageDataset) -> None:
    """Raise InputError if the checkpoint's model cannot take ``data``'s images."""
    shape = checkpoint.input_shape
    if shape is not None and len(shape) == 3 and shape[0] != data.channels:
        raise InputError(
            f"the model expects {shape[0]}-channel images (input_shape {shape}) but "
            f"{data.name} has {data.channels} channel(s); evaluate it on data like its "
            "training data"
        )
    check_input_channels(checkpoint.model, data.images, what=data.name)
    if shape is not None and len(shape) == 3 and tuple(shape[1:]) != data.image_hw:
        logger.warning(
            "the model was trained on %dx%d images but %s is %dx%d",
            shape[1],
            shape[2],
            data.name,
            *data.image_hw,
        )


def robustness_table(
    checkpoint: Checkpoint | str | os.PathLike,
    dataset: str | ImageDataset = "mnist",
    corruptions: str | Sequence[str] | None = None,
    severities: str | Sequence[int] | None = None,
    seed: int = 0,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Accuracy on the clean test images and on each corruption x severity.

    Args:
        checkpoint: a :class:`~ttmpd.models.Checkpoint` or a path to one; its
            normalisation is applied to every input.
        dataset: ``"mnist"`` / ``"digits"`` (their test split) or a labeled ImageDataset.
        corruptions: names, a comma-separated string, or None/"all" for every corruption.
        severities: 1..5 values (default all five).
        seed: corruption seed (the same seed gives the same corrupted images).
        batch_size: images per forward pass.
        limit: evaluate only the first ``limit`` test images.
        progress: show a tqdm bar over the (corruption, severity) cells.

    Returns:
        DataFrame with columns ``corruption, severity, accuracy, n``: first the clean row
        (``"clean"``, 0), then corruptions in the given order, severities ascending.
    """
    import pandas as pd

    names = resolve_corruptions(corruptions)
    levels = resolve_severities(severities)
    ckpt = _as_checkpoint(checkpoint)
    data = _as_test_data(dataset, limit)
    check_compatible(ckpt, data)
    model, norm = inference_copy(ckpt.model), ckpt.normalization

    def accuracy(images: np.ndarray) -> float:
        return evaluate(model, images, data.labels, norm, batch_size=batch_size)

    rows: list[dict[str, Any]] = [
        {"corruption": CLEAN, "severity": 0, "accuracy": accuracy(data.images), "n": len(data)}
    ]
    cells = [(name, level) for name in names for level in levels]
    for name, level in tqdm(cells, desc="evaluate", unit="cell", disable=not progress):
        images = corrupt(data.images, name, level, seed)
        rows.append({"corruption": name, "severity": level, "accuracy": accuracy(images)})
        rows[-1]["n"] = len(data)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"severity": "int64", "n": "int64", "accuracy": "float64"})


def summarize(table: pd.DataFrame) -> dict[str, Any]:
    """Clean accuracy, the mean over corruptions per severity, and the overall corrupted mean.

    Returns ``{"clean": float | None, "mean_by_severity": {severity: float},
    "mean_corrupted": float | None, "n_corruptions": int}`` (accuracies in [0, 1]).
    """
    clean_rows = table[table["corruption"] == CLEAN]
    corrupted = table[table["corruption"] != CLEAN]
    by_severity = corrupted.groupby("severity")["accuracy"].mean()
    return {
        "clean": float(clean_rows["accuracy"].iloc[0]) if len(clean_rows) else None,
        "mean_by_severity": {int(s): float(a) for s, a in by_severity.items()},
        "mean_corrupted": float(corrupted["accuracy"].mean()) if len(corrupted) else None,
        "n_corruptions": int(corrupted["corruption"].nunique()),
    }
