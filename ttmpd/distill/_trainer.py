"""The distillation trainer: cached (or online) teacher targets -> fine-tuned student.

:func:`distill` trains ``student`` on the subset held by a :class:`TeacherCache` with the
configured losses and scheme. Each epoch visits every subset sample once in a seeded order
(one stored view per sample); teacher targets come from the cache, or — ``online=True``, the
baseline — from a teacher forward pass at every step. Labels, when given, are used only to
report accuracy after each epoch. With ``out_dir``, every epoch writes ``train_state.pt``
and ``history.csv`` atomically; Ctrl-C finishes the current step, writes a resumable state
and raises :class:`DistillInterrupted` (exit code 130); ``resume=True`` continues exactly
where the state left off (same result as an uninterrupted run).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._bn import adapt_bn_batches
from .._device import input_on, module_device, on_device, resolve_device
from .._io import atomic_path
from .._layout import LayoutChoice, training_layout
from .._progress import stall_watch
from ..errors import InputError
from ._cache import TeacherCache, ToInput
from ._config import DistillConfig
from ._features import FeatureHooks, Features
from ._losses import CombinedLoss, LossContext
from ._optim import make_optimizer, make_schedule
from ._schemes import SCHEMES
from ._state import DistillInterrupted, load_state, save_state

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.csv"
BASE_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "loss",
    "samples",
    "seconds",
    "samples_per_s",
    "teacher_forwards",
)


@dataclass
class DistillResult:
    """The fine-tuned student (eval mode), the per-epoch history and a summary dict."""

    student: nn.Module
    history: pd.DataFrame
    summary: dict


def accuracy(model: nn.Module, images, labels, to_input: ToInput, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (eval mode, restored afterwards) on uint8 images;
    ``to_input`` must put them where ``model`` lives."""
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.inference_mode():
            for b in range(0, len(images), batch_size):
                pred = model(to_input(images[b : b + batch_size])).argmax(1).cpu().numpy()
                correct += int((pred == np.asarray(labels[b : b + batch_size])).sum())
    finally:
        model.train(was_training)
    return correct / max(1, len(images))


class _InterruptFlag:
    """Turn the first SIGINT into a flag checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:  # a second Ctrl-C aborts at once, without saving
            raise KeyboardInterrupt
        self.raised = True
        logger.warning("interrupt: finishing the current step, then saving (Ctrl-C again aborts)")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _probe(model: nn.Module, layers, x: torch.Tensor, what: str) -> Features:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FeatureHooks(model, layers, what=what) as hooks:
            return hooks.run(model, x)
    finally:
        model.train(was_training)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    cache: TeacherCache,
    to_input: ToInput,
    config: DistillConfig | None = None,
    *,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    eval_epochs: Collection[int] | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> DistillResult:
    """Fine-tune ``student`` (in place) by distillation from ``teacher`` on ``cache``.

    Args:
        teacher: the unpruned model; frozen, always in eval mode (online mode only).
        student: the pruned model; trained in train mode, returned in eval mode.
        cache: the subset and (unless ``config.online``) the cached teacher outputs; its
            ``layers`` must be the teacher layers the config resolves to.
        to_input: uint8 NHWC images -> model input (the checkpoint's normalisation).
        config: losses, scheme, optimisation, seed.
        eval_data: ``(images, labels)`` for per-epoch accuracy (labels used only here).
        eval_epochs: the 1-based epochs after which ``eval_data`` is evaluated (None: every
            epoch); evaluation time is not part of the history's ``seconds``. With
            ``config.adapt_bn`` the BN statistics are re-estimated before each evaluation
            and after the last epoch; ``adapt_s`` in the history is that pass's time.
        out_dir: where ``train_state.pt`` and ``history.csv`` go each epoch.
        resume: continue from ``out_dir/train_state.pt``.

    On ``config.device`` the student trains there and is moved back to its own device at
    the end (in place, as on the CPU); the teacher runs as a copy on that device.
    """
    config = config or DistillConfig()
    if resume and out_dir is None:
        raise InputError("resume needs out_dir (where train_state.pt was written)")
    device = resolve_device(config.device)
    home = module_device(student)
    teacher = on_device(teacher, device)
    to_input = input_on(to_input, device)
    student.to(device)
    try:
        return _distill(teacher, student, cache, to_input, config, device, eval_data,
                        eval_epochs, out_dir, resume)  # fmt: skip
    finally:
        student.to(home)


def _distill(teacher, student, cache, to_input, config, device, eval_data, eval_epochs,
             out_dir, resume) -> DistillResult:  # fmt: skip
    student_layers, teacher_layers = config.resolve_layers(student)
    if not config.online and not cache.has_outputs:
        raise InputError("the cache holds no teacher outputs; build it with outputs=True")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    n = cache.num_samples
    probe_x = to_input(cache.images[0, : min(2, n)])
    s_probe = _probe(student, student_layers, probe_x, "student")
    t_probe = _probe(teacher, teacher_layers, probe_x, "teacher")
    if s_probe.logits.shape[1:] != t_probe.logits.shape[1:]:
        raise InputError(
            f"teacher outputs {tuple(t_probe.logits.shape[1:])} per sample but the student "
            f"outputs {tuple(s_probe.logits.shape[1:])}; distil between models with the same "
            "classes"
        )
    layout = _training_layout(config, student, to_input(cache.images[0, : config.batch_size]),
                              device)  # fmt: skip
    positions = None if config.online else cache.layer_positions(teacher_layers)
    context = LossContext(
        num_classes=int(t_probe.logits.shape[1]),
        student_shapes=tuple(tuple(f.shape[1:]) for f in s_probe.features),
        teacher_shapes=tuple(tuple(f.shape[1:]) for f in t_probe.features),
        num_samples=n,
    )
    torch.manual_seed(config.seed)
    loss = CombinedLoss(config.loss, context).to(device)
    scheme = SCHEMES.get(config.scheme)(student, context).to(device)
    params = [*student.parameters(), *loss.parameters(), *scheme.trainable()]
    optimizer = make_optimizer(
        params, config.optimizer, config.lr, config.weight_decay, config.momentum
    )
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = config.steps or config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    schedule = make_schedule(optimizer, config.schedule, total_steps, warmup_steps)
    fingerprint = str(cache.meta.get("fingerprint", ""))
    pos = {"epoch": 0, "step": 0, "global_step": 0, "sums": {}, "samples": 0, "seconds": 0.0}
    history: list[dict] = []
    teacher_forwards = 0 if config.online else cache.teacher_forwards
    if resume:
        state = load_state(out_dir, config.signature(), fingerprint)
        student.load_state_dict(state["student"])
        loss.load_state_dict(state["loss"])
        scheme.load_state_dict(state["scheme"])
        scheme.load_extra_state(state["scheme_extra"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        pos, history = state["position"], state["history"]
        teacher_forwards = state["teacher_forwards"]
        logger.info("resuming at epoch %d, step %d", pos["epoch"] + 1, pos["step"])
    before = None
    if eval_data is not None and not resume:
        before = accuracy(student, *eval_data, to_input, config.eval_batch_size)
    elif resume:
        before = state.get("accuracy_before")

    def snapshot() -> dict:
        return {
            "signature": config.signature(),
            "fingerprint": fingerprint,
            "student": student.state_dict(),
            "loss": loss.state_dict(),
            "scheme": scheme.state_dict(),
            "scheme_extra": scheme.extra_state(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "position": dict(pos),
            "history": list(history),
            "teacher_forwards": teacher_forwards,
            "accuracy_before": before,
        }

    student_hooks = FeatureHooks(student, student_layers, what="student")
    teacher_hooks = FeatureHooks(teacher, teacher_layers, what="teacher") if config.online else None
    bar = tqdm(
        total=total_steps,
        initial=pos["global_step"],
        disable=not config.progress,
        desc="distill",
        unit="step",
    )
    if layout.channels_last:
        student.to(memory_format=torch.channels_last)
        scheme.to(memory_format=torch.channels_last)
    student.train()
    loss.train()
    scheme.train()
    try:
        with _InterruptFlag() as interrupt, stall_watch(bar):
            while pos["epoch"] < epochs and pos["global_step"] < total_steps:
                epoch = pos["epoch"]
                rng = np.random.default_rng([config.seed, epoch])
                order = rng.permutation(n)
                views = rng.integers(0, cache.views, size=n)
                start = time.perf_counter()
                while pos["step"] < steps_per_epoch and pos["global_step"] < total_steps:
                    b = pos["step"] * config.batch_size
                    ids = order[b : b + config.batch_size]
                    images, t_out = cache.batch(ids, views[ids], positions)
                    x = to_input(images)
                    index = torch.from_numpy(ids.astype(np.int64)).to(device)
                    if t_out is not None and device.type != "cpu":
                        t_out = _features_on(t_out, device)
                    if config.online:
                        with torch.no_grad():
                            t_out = teacher_hooks.run(teacher, x, index)
                        teacher_forwards += len(ids)
                    x_student = layout.apply(x)
                    s_out = student_hooks.run(student, x_student, index)
                    total, parts = loss(s_out, t_out)
                    extra, extra_parts = scheme.extra_loss(x_student, s_out, t_out)
                    total = total + extra
                    if not torch.isfinite(total):
                        raise InputError(
                            f"the loss became {float(total)} at step {pos['global_step'] + 1}; "
                            "lower --lr or the loss weights"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    optimizer.step()
                    schedule.step()
                    parts.update(extra_parts)
                    parts.update(scheme.after_step(s_out.detach(), t_out))
                    parts["loss"] = float(total.detach())
                    for key, value in parts.items():
                        pos["sums"][key] = pos["sums"].get(key, 0.0) + value * len(ids)
                    pos["samples"] += len(ids)
                    pos["step"] += 1
                    pos["global_step"] += 1
                    bar.update(1)
                    elapsed = pos["seconds"] + time.perf_counter() - start
                    bar.set_postfix(
                        loss=f"{parts['loss']:.4f}",
                        sps=f"{pos['samples'] / max(1e-9, elapsed):.0f}",
                    )
                    if interrupt.raised:
                        pos["seconds"] += time.perf_counter() - start
                        if out_dir is not None:
                            path = save_state(out_dir, snapshot())
                            raise DistillInterrupted(
                                f"interrupted at epoch {epoch + 1}, step {pos['step']}; state "
                                f"saved to {path}: rerun with --resume to continue"
                            )
                        raise DistillInterrupted("interrupted; no --out, nothing saved")
                pos["seconds"] += time.perf_counter() - start
                row = _history_row(pos, epoch, schedule, teacher_forwards)
                evaluate = eval_data is not None and (
                    eval_epochs is None or epoch + 1 in eval_epochs
                )
                last = pos["global_step"] >= total_steps
                row["adapt_s"] = 0.0
                if config.adapt_bn and (evaluate or last):
                    row["adapt_s"] = _adapt_student_bn(
                        student, cache, to_input, layout, config.batch_size
                    )
                if evaluate:
                    row["accuracy"] = accuracy(
                        student, *eval_data, to_input, config.eval_batch_size
                    )
                    message = f"epoch {epoch + 1}: accuracy {row['accuracy'] * 100:.2f}%"
                    if config.progress:
                        tqdm.write(message, file=sys.stderr)
                    logger.info(message)
                history.append(row)
                pos.update(epoch=epoch + 1, step=0, sums={}, samples=0, seconds=0.0)
                if out_dir is not None:
                    save_state(out_dir, snapshot())
                    _write_history(Path(out_dir) / HISTORY_FILE, history)
    finally:
        bar.close()
        student_hooks.close()
        if teacher_hooks is not None:
            teacher_hooks.close()
        if layout.channels_last:  # hand back the layout the caller deploys (NCHW weights)
            student.to(memory_format=torch.contiguous_format)
            scheme.to(memory_format=torch.contiguous_format)
    student.eval()
    frame = pd.DataFrame(history)
    seconds = float(frame["seconds"].sum()) if len(frame) else 0.0
    summary = {
        "subset": n,
        "views": cache.views,
        "epochs": epochs,
        "steps": int(pos["global_step"]),
        "train_seconds": round(seconds, 3),
        "teacher_forwards": int(teacher_forwards),
        "teacher_forwards_saved": (
            0 if config.online else int(epochs * n - cache.num_samples * cache.views)
        ),
        "online": config.online,
        "student_layers": list(student_layers),
        "teacher_layers": list(teacher_layers),
        "accuracy_before": before,
        "accuracy_after": (
            float(frame["accuracy"].iloc[-1])
            if "accuracy" in frame and frame["accuracy"].notna().iloc[-1]
            else None
        ),
        "layout": layout.reason,
    }
    return DistillResult(student, frame, summary)


def _features_on(features: Features, device: torch.device) -> Features:
    return Features(
        features.logits.to(device, non_blocking=True),
        tuple(f.to(device, non_blocking=True) for f in features.features),
        None if features.index is None else features.index.to(device),
    )


def _training_layout(
    config: DistillConfig, student: nn.Module, x: torch.Tensor, device: torch.device
) -> LayoutChoice:
    """``config.channels_last``: True/False force the layout, ``"auto"`` probes it on the
    CPU (:func:`ttmpd._layout.training_layout`: channels_last only where safe and faster);
    on a GPU ``"auto"`` keeps NCHW (the probe measures the CPU's oneDNN kernels)."""
    if config.channels_last == "auto" and device.type != "cpu":
        return LayoutChoice(False, f"NCHW ({device.type}: the layout probe is CPU-only)")
    if config.channels_last == "auto":
        return training_layout(student, x)
    forced = bool(config.channels_last)
    return LayoutChoice(forced, f"{'channels_last' if forced else 'NCHW'} (set in the config)")


def _adapt_student_bn(student, cache, to_input, layout, batch_size: int) -> float:
    """Re-estimate the student's BN statistics on the cache's images (view 0) with its
    current weights (:func:`ttmpd._bn.adapt_bn_batches`), leaving it in train mode; the
    seconds it took."""
    start = time.perf_counter()
    images = cache.images[0]
    batches = (
        layout.apply(to_input(images[b : b + batch_size]))
        for b in range(0, cache.num_samples, batch_size)
    )
    adapt_bn_batches(student, batches)
    student.train()
    return time.perf_counter() - start


def _history_row(pos: dict, epoch: int, schedule, teacher_forwards: int) -> dict:
    samples = max(1, pos["samples"])
    row = {
        "epoch": epoch + 1,
        "step": pos["global_step"],
        "lr": float(schedule.get_last_lr()[0]),
        "loss": pos["sums"].get("loss", float("nan")) / samples,
        "samples": pos["samples"],
        "seconds": round(pos["seconds"], 4),
        "samples_per_s": pos["samples"] / max(1e-9, pos["seconds"]),
        "teacher_forwards": teacher_forwards,
    }
    for key, value in pos["sums"].items():
        if key != "loss":
            row[f"loss_{key}"] = value / samples
    return row


def _write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
