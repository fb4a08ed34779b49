"""Train a zoo model on the source split: the pretrained base model a test stream meets.

Recipe (defaults of :class:`TrainConfig`): 12 epochs of SGD with Nesterov momentum 0.9,
weight decay 5e-4, batch 64, peak learning rate 0.1 reached by a linear warm-up over the
first 5 % of the steps, then a cosine decay to 0 per step (``optimizer="adamw"`` swaps SGD
for AdamW, decoupled weight decay, betas 0.9/0.999, with the same schedule: the usual choice
for transformers, e.g. lr 1e-3 and weight decay 0.05); random shifts of up to 2 px on
28x28 digits as the only augmentation (no corruptions: those are the test-time shift).
Inputs are normalised with the per-channel mean/std of the training images, which the
checkpoint stores. A fixed seed fixes initialisation, shuffling and shifts (``torch`` and
``numpy``), so the same seed, thread count and training layout (NCHW or channels_last, probed
per device by :mod:`ttmpd._layout`) give identical weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .._layout import training_layout
from .._progress import stall_watch
from .._version import __version__
from ..data import ImageDataset
from ..data.embedded import load_builtin
from ..errors import InputError, TtmpdError, one_line
from ..models import create_model, list_models, save_checkpoint
from ._augment import auto_shift_px, random_shift
from .evaluate import evaluate
from .inputs import Normalization, channel_stats, to_model_input

logger = logging.getLogger(__name__)

WARMUP_FRACTION = 0.05
OPTIMIZERS = ("sgd", "adamw")


class TrainingInterrupted(TtmpdError):
    """Training was interrupted (Ctrl-C); no checkpoint was written."""

    exit_code = 130


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train a base model; validated on creation.

    Attributes:
        model: zoo architecture name (``ttmpd models``), built with the data's channels and
            classes; or a ``file.py:factory`` / ``package.module:factory`` spec, whose model
            must already take the data's channels and output its classes.
        epochs: passes over the training images.
        batch_size: images per optimizer step.
        lr: peak learning rate (after warm-up; cosine decay to 0 afterwards).
        momentum: Nesterov momentum (SGD only).
        weight_decay: L2 penalty on all parameters (SGD), or AdamW's decoupled decay.
        max_shift_px: largest random shift; None = 2 px per 28 px of image side (at least 1),
            0 = no augmentation.
        seed: seeds initialisation, shuffling and shifts.
        threads: torch intra-op threads while training (None = leave torch's setting);
            restored afterwards. Bitwise reproducibility needs the same thread count.
        eval_batch_size: batch size of the final clean-accuracy evaluation.
        optimizer: ``"sgd"`` (Nesterov SGD) or ``"adamw"`` (AdamW, betas 0.9/0.999).
    """

    model: str = "resnet20"
    epochs: int = 12
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_shift_px: int | None = None
    seed: int = 0
    threads: int | None = None
    eval_batch_size: int = 256
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.model not in list_models() and ":" not in self.model:
            raise InputError(
                f"unknown model {self.model!r}; choose one of: {', '.join(list_models())}, "
                "or give your own as path/to/file.py:factory"
            )
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _positive_int(name, getattr(self, name))
        if self.optimizer not in OPTIMIZERS:
            raise InputError(
                f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"
            )
        if self.threads is not None:
            _positive_int("threads", self.threads)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise InputError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.max_shift_px is not None and (
            isinstance(self.max_shift_px, bool)
            or not isinstance(self.max_shift_px, int)
            or self.max_shift_px < 0
        ):
            raise InputError(f"max_shift_px must be None or an int >= 0, got {self.max_shift_px!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class TrainResult:
    """A trained base model and how it was made. :meth:`save` writes the checkpoint.

    ``clean_accuracy`` is the accuracy on the clean test split in [0, 1] (None when no test
    data was given); ``train_accuracy`` and ``epoch_losses`` are running values on the
    augmented training batches.
    """

    model: nn.Module
    config: TrainConfig
    dataset: str
    input_shape: tuple[int, int, int]
    num_classes: int
    normalization: Normalization
    clean_accuracy: float | None
    train_accuracy: float
    epoch_losses: tuple[float, ...]
    train_time_s: float
    samples_per_s: float
    threads: int
    n_train: int
    n_test: int = 0
    arch_kwargs: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """What the checkpoint records about the run."""
        return {
            "dataset": self.dataset,
            "epochs": self.config.epochs,
            "seed": self.config.seed,
            "clean_test_accuracy": self.clean_accuracy,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "train_accuracy": round(self.train_accuracy, 6),
            "epoch_losses": [round(v, 6) for v in self.epoch_losses],
            "train_time_s": round(self.train_time_s, 2),
            "threads": self.threads,
            "train_config": asdict(self.config),
            "ttmpd_version": __version__,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model as a ttmpd checkpoint (atomically; see ``save_checkpoint``)."""
        return save_checkpoint(
            path,
            self.model,
            arch=self.config.model if self.config.model in list_models() else None,
            arch_kwargs=self.arch_kwargs,
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            normalization=self.normalization,
            metadata=self.metadata(),
        )


def _build_model(
    spec: str, channels: int, num_classes: int, example: torch.Tensor
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, arch_kwargs)``: a zoo model built for the data, or the model of a factory
    spec, checked to map ``example`` (N, C, H, W) to ``(N, num_classes)`` logits."""
    if spec in list_models():
        arch_kwargs = {"in_channels": channels, "num_classes": num_classes}
        return create_model(spec, **arch_kwargs), arch_kwargs
    from ..models import load_model

    model = load_model(spec)
    try:
        with torch.no_grad():
            out = model.eval()(example[:2])
    except Exception as exc:  # user code failing on the data's shape is bad input
        raise InputError(
            f"model {spec!r} does not run on the data's images {tuple(example.shape[1:])} "
            f"({one_line(exc)}); make it take {channels} input channel(s)"
        ) from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise InputError(
            f"model {spec!r} outputs shape {tuple(out.shape)}; the data has {num_classes} "
            f"classes, so it must output (N, {num_classes})"
        )
    return model, {}


def _resolve_data(
    dataset: str | ImageDataset, test: ImageDataset | None
) -> tuple[ImageDataset, ImageDataset | None]:
    if isinstance(dataset, str):
        train = load_builtin(dataset, "source")
        return train, load_builtin(dataset, "test") if test is None else test
    if not isinstance(dataset, ImageDataset):
        raise InputError(
            f"dataset must be 'mnist', 'digits' or an ImageDataset, got {type(dataset).__name__}"
        )
    return dataset, test


def _num_classes(train: ImageDataset) -> int:
    if train.labels is None:
        raise InputError(f"{train.name} has no labels; a base model needs labeled source data")
    if len(train) == 0:
        raise InputError(f"{train.name} is empty; give at least one training image")
    if train.labels.min() < 0:
        raise InputError(f"{train.name} has negative labels; use labels 0..K-1")
    return max(int(train.labels.max()) + 1, len(train.classes))


def _lr_factor(step: int, total: int) -> float:
    warmup = max(1, round(total * WARMUP_FRACTION))
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total))


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def train_base(
    config: TrainConfig,
    dataset: str | ImageDataset,
    *,
    test: ImageDataset | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``config.model`` on labeled source images; return the model and its record.

    Args:
        config: the recipe.
        dataset: ``"mnist"`` / ``"digits"`` (trains on the ``source`` split and measures
            clean accuracy on the ``test`` split) or a labeled :class:`ImageDataset`.
        test: labeled clean test images for the final accuracy (default: the built-in
            dataset's test split; none for an ImageDataset).
        progress: show a tqdm bar with loss, accuracy and samples/s.

    Raises:
        TrainingInterrupted: on Ctrl-C (exit code 130); nothing is written.
    """
    train, test = _resolve_data(dataset, test)
    num_classes = _num_classes(train)
    channels = train.channels
    h, w = train.image_hw
    normalization = channel_stats(train.images)
    shift = auto_shift_px((h, w)) if config.max_shift_px is None else config.max_shift_px
    rng = np.random.default_rng(config.seed)
    labels = torch.from_numpy(train.labels)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * steps_per_epoch

    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    threads = torch.get_num_threads()
    epoch_losses: list[float] = []
    seen = correct = 0
    step = 0
    start = time.perf_counter()
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, leave=False)
    try:
        with torch.random.fork_rng(devices=[]), stall_watch(bar):
            torch.manual_seed(config.seed)
            example = to_model_input(train.images[: config.batch_size], normalization)
            model, arch_kwargs = _build_model(config.model, channels, num_classes, example)
            layout = training_layout(model, example, threads)
            model.to(memory_format=layout.memory_format)  # channels_last where safe, faster
            optimizer = _optimizer(model, config)
            model.train()
            for epoch in range(config.epochs):
                bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
                order = rng.permutation(len(train))
                loss_sum = 0.0
                seen = correct = 0
                for begin in range(0, len(train), config.batch_size):
                    index = np.sort(order[begin : begin + config.batch_size])
                    batch = random_shift(train.images[index], shift, rng)
                    x = to_model_input(batch, normalization)
                    x, y = layout.apply(x), labels[index]
                    for group in optimizer.param_groups:
                        group["lr"] = config.lr * _lr_factor(step, total)
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    loss_sum += loss.item() * len(index)
                    seen += len(index)
                    correct += int((logits.argmax(1) == y).sum())
                    elapsed = time.perf_counter() - start
                    bar.update()
                    bar.set_postfix(
                        loss=f"{loss_sum / seen:.3f}",
                        acc=f"{correct / seen:.3f}",
                        img_s=f"{(epoch * len(train) + seen) / elapsed:.0f}",
                        refresh=False,
                    )
                epoch_losses.append(loss_sum / seen)
                logger.info(
                    "epoch %d/%d: loss %.4f, accuracy %.4f",
                    epoch + 1,
                    config.epochs,
                    loss_sum / seen,
                    correct / seen,
                )
        train_time = time.perf_counter() - start
        model.to(memory_format=torch.contiguous_format).eval()
        clean = None
        if test is not None:
            clean = evaluate(
                model, test.images, test.labels, normalization, batch_size=config.eval_batch_size
            )
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted at step {step} of {total} (epoch {step // steps_per_epoch + 1} of "
            f"{config.epochs}); no checkpoint was written"
        ) from None
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
    return TrainResult(
        model=model,
        config=config,
        dataset=train.name,
        input_shape=(channels, h, w),
        num_classes=num_classes,
        normalization=normalization,
        clean_accuracy=clean,
        train_accuracy=correct / seen,
        epoch_losses=tuple(epoch_losses),
        train_time_s=train_time,
        samples_per_s=config.epochs * len(train) / train_time,
        threads=threads,
        n_train=len(train),
        n_test=0 if test is None else len(test),
        arch_kwargs=arch_kwargs,
    )
