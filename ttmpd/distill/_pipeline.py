"""Checkpoints and a stream file in, a distilled student checkpoint out (what the CLI runs).

``distill_files`` loads the teacher and the pruned student (ttmpd checkpoints), the test
stream (``.npz`` or image folder), builds or reuses the teacher cache, trains, and writes
into ``out_dir``: ``student.pt`` (whole-module ttmpd checkpoint), ``history.csv``,
``summary.json`` and ``train_state.pt`` (for ``resume``). If the stream has labels, the
samples not chosen for fine-tuning are the held-out evaluation set (labels are never used
for training).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np

from .._device import resolve_device
from .._io import atomic_path, ensure_writable_dir
from ..errors import InputError
from ._cache import CacheConfig, TeacherCache
from ._config import DistillConfig
from ._selection import SelectionConfig
from ._trainer import distill

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
STUDENT_FILE = "student.pt"


def held_out(n_stream: int, indices: np.ndarray) -> np.ndarray:
    """Stream positions not in the fine-tuning subset, in stream order."""
    mask = np.ones(n_stream, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = False
    return np.flatnonzero(mask)


def distill_files(
    teacher_path: str | os.PathLike,
    student_path: str | os.PathLike,
    data_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: DistillConfig,
    selection: SelectionConfig,
    cache_config: CacheConfig | None = None,
    *,
    resume: bool = False,
) -> dict:
    """Run distillation on files; return the summary (also written to summary.json)."""
    from ..base import to_model_input
    from ..data import load_stream
    from ..models import load_checkpoint, save_checkpoint

    out = Path(out_dir)
    cache_config = cache_config or CacheConfig()
    resolve_device(config.device)  # a missing GPU: one line, nothing written
    resolve_device(cache_config.device)
    ensure_writable_dir(out / STUDENT_FILE)
    if cache_config.directory is None and cache_config.views > 1:
        logger.info("caching %d views per sample in memory", cache_config.views)
    teacher_ckpt = load_checkpoint(teacher_path)
    student_ckpt = load_checkpoint(student_path)
    data = load_stream(data_path)  # labels, when present, only measure accuracy
    normalization = teacher_ckpt.normalization
    if student_ckpt.normalization not in (None, normalization):
        raise InputError(
            f"teacher normalisation {normalization} differs from the student's "
            f"{student_ckpt.normalization}; prune the student from this teacher"
        )
    to_input = partial(to_model_input, normalization=normalization)
    _student_layers, teacher_layers = config.resolve_layers(student_ckpt.model)
    if config.online:
        cache_config = replace(cache_config, outputs=False)
    start = time.perf_counter()
    cache = TeacherCache.build(
        teacher_ckpt.model,
        data.images,
        to_input,
        layers=teacher_layers,
        selection=selection,
        config=cache_config,
    )
    cache_seconds = time.perf_counter() - start
    eval_data = None
    if data.labels is not None:
        rest = held_out(len(data), cache.indices)
        if len(rest):
            eval_data = (data.images[rest], data.labels[rest])
    result = distill(
        teacher_ckpt.model,
        student_ckpt.model,
        cache,
        to_input,
        config,
        eval_data=eval_data,
        out_dir=out,
        resume=resume,
    )
    summary = {
        **result.summary,
        "teacher": str(teacher_path),
        "student": str(student_path),
        "data": str(data_path),
        "loss": config.loss,
        "scheme": config.scheme,
        "selection": asdict(selection),
        "cache_seconds": round(cache_seconds, 3),
        "cache_teacher_forwards": cache.teacher_forwards,
        "cache_directory": cache_config.directory,
        "held_out": 0 if eval_data is None else len(eval_data[0]),
    }
    save_checkpoint(
        out / STUDENT_FILE,
        result.student,
        input_shape=student_ckpt.input_shape,
        num_classes=student_ckpt.num_classes,
        normalization=normalization,
        metadata={
            **student_ckpt.metadata,
            "distill": {k: summary[k] for k in ("loss", "scheme", "subset", "epochs", "steps")},
        },
    )
    with atomic_path(out / SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
