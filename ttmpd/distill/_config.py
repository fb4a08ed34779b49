"""Distillation settings: losses, scheme, feature layers, optimisation, seed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from torch import nn

from .._device import check_device_spec
from ..errors import InputError
from ._features import default_feature_layers
from ._losses import parse_loss_spec, spec_needs_features
from ._optim import OPTIMIZERS, SCHEDULES
from ._schemes import SCHEMES


@dataclass(frozen=True)
class DistillConfig:
    """Distillation settings (validated on creation).

    ``feature_layers`` are student module paths (None: ``layer1..`` stages when a loss or
    scheme needs features); ``teacher_layers`` default to the same paths. ``steps``, when
    given, overrides ``epochs`` (the last epoch may be partial). ``warmup_epochs``: the
    learning rate rises linearly over the first ``round(warmup_epochs x steps per epoch)``
    steps, then ``schedule`` runs over the rest. ``adapt_bn``: before every evaluation and
    after the last step, the student's BN statistics are re-estimated on the fine-tune
    images (view 0) with its current weights; running statistics averaged during training
    lag behind weights that move (after one epoch of the default schedule they can cost the
    student most of its accuracy), and the pass costs one no-grad forward over the images.
    It changes no weight. ``channels_last`` trains
    the student with NHWC weights and inputs (same results up to float rounding): ``"auto"``
    where a probe of the student's convs finds it safe and faster on this device
    (:mod:`ttmpd._layout`), True or False to force it. ``device`` (``cpu``, ``cuda``,
    ``cuda:N``) is where teacher and student compute: on a GPU the student trains on the
    device and comes back to the caller's device, and the teacher is copied, never moved.
    """

    loss: str = "kd"
    scheme: str = "standard"
    feature_layers: tuple[str, ...] | None = None
    teacher_layers: tuple[str, ...] | None = None
    epochs: int = 10
    steps: int | None = None
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    adapt_bn: bool = True
    seed: int = 0
    online: bool = False
    progress: bool = True
    eval_batch_size: int = 512
    channels_last: bool | str = "auto"
    device: str = "cpu"

    def __post_init__(self) -> None:
        parse_loss_spec(self.loss)
        SCHEMES.get(self.scheme)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise InputError(f"steps must be a positive integer or None, got {self.steps!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(
                f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise InputError(
                f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise InputError(
                f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}"
            )
        if isinstance(self.warmup_epochs, bool) or not (
            isinstance(self.warmup_epochs, int | float)
            and math.isfinite(self.warmup_epochs)
            and self.warmup_epochs >= 0
        ):
            raise InputError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if not isinstance(self.adapt_bn, bool):
            raise InputError(f"adapt_bn must be True or False, got {self.adapt_bn!r}")
        if self.channels_last not in ("auto", True, False):
            raise InputError(
                f"channels_last must be 'auto', True or False, got {self.channels_last!r}"
            )
        check_device_spec(self.device)
        for name in ("feature_layers", "teacher_layers"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    @property
    def needs_features(self) -> bool:
        return spec_needs_features(self.loss) or SCHEMES.get(self.scheme).needs_student_features

    def resolve_layers(self, student: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(student_layers, teacher_layers)`` actually hooked (empty without features)."""
        if not self.needs_features:
            return (), ()
        student_layers = self.feature_layers or tuple(default_feature_layers(student))
        if not student_layers:
            raise InputError("the losses need feature layers; pass them (--features layer1,...)")
        teacher_layers = self.teacher_layers or student_layers
        if len(teacher_layers) != len(student_layers):
            raise InputError(
                f"{len(student_layers)} student feature layers but {len(teacher_layers)} "
                "teacher layers; give one teacher layer per student layer"
            )
        return tuple(student_layers), tuple(teacher_layers)

    def signature(self) -> dict:
        sig = asdict(self)
        sig.pop("progress")
        sig.pop("eval_batch_size")
        sig.pop("device")  # a run may resume on another device
        sig.pop("adapt_bn")  # changes no weight
        if not sig["warmup_epochs"]:  # states saved before warm-up existed still resume
            sig.pop("warmup_epochs")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in sig.items()}
