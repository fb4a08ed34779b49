"""The loss registry, the common loss base class, and ``kd:0.9,at:1000,ce:0.1`` specs.

Every loss is a :class:`DistillLoss`: an ``nn.Module`` built from a :class:`LossContext`
(class count and the per-sample shapes of the hooked student/teacher features, which
connector-based losses need) whose ``forward(student: Features, teacher: Features)``
returns a scalar. ``forward`` detaches the teacher's tensors before calling ``compute``, so
no gradient can reach a teacher whatever the loss does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..._registry import Registry
from ...errors import InputError
from .._features import Features


@dataclass(frozen=True)
class LossContext:
    """What a loss may need to build its trainable parts.

    Attributes:
        num_classes: width of the logits.
        student_shapes: per-sample shapes (no batch dim) of the hooked student features.
        teacher_shapes: the same for the teacher (same number of layers).
        num_samples: size of the fine-tuning subset (memory-bank losses such as CRD).
    """

    num_classes: int
    student_shapes: tuple[tuple[int, ...], ...] = ()
    teacher_shapes: tuple[tuple[int, ...], ...] = ()
    num_samples: int = 0

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise InputError(f"num_classes must be positive, got {self.num_classes}")
        object.__setattr__(self, "student_shapes", tuple(map(tuple, self.student_shapes)))
        object.__setattr__(self, "teacher_shapes", tuple(map(tuple, self.teacher_shapes)))
        if len(self.student_shapes) != len(self.teacher_shapes):
            raise InputError(
                f"{len(self.student_shapes)} student feature layer(s) but "
                f"{len(self.teacher_shapes)} teacher layer(s); hook the same number on both"
            )


class DistillLoss(nn.Module):
    """Base class: subclasses set ``name``, ``default_weight``, ``needs_features``
    (and ``min_layers``) and implement ``compute(student, teacher)``."""

    name: ClassVar[str] = ""
    default_weight: ClassVar[float] = 1.0
    needs_features: ClassVar[bool] = False
    needs_maps: ClassVar[bool] = False
    min_layers: ClassVar[int] = 1

    def __init__(self, context: LossContext) -> None:
        super().__init__()
        if self.needs_features and len(context.student_shapes) < self.min_layers:
            raise InputError(
                f"loss {self.name!r} needs at least {self.min_layers} hooked feature layer(s), "
                f"got {len(context.student_shapes)}; pass feature layers (--features layer1,...)"
            )
        if self.needs_maps:
            flat = [
                (i, s)
                for i, s in enumerate(context.student_shapes + context.teacher_shapes)
                if len(s) != 3
            ]
            if flat:
                i, shape = flat[0]
                layer = i % max(1, len(context.student_shapes))
                raise InputError(
                    f"loss {self.name!r} compares positions of feature maps, but feature "
                    f"layer {layer} has per-sample shape {shape} (a vector); hook conv stages "
                    "or transformer blocks, or use a loss for vectors (e.g. rkd, pkt, cc, sp)"
                )
        self.context = context

    def forward(self, student: Features, teacher: Features) -> torch.Tensor:
        return self.compute(student, teacher.detach())

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        raise NotImplementedError


LOSSES: Registry[type[DistillLoss]] = Registry("distillation loss")


def list_losses() -> list[str]:
    """Names of all registered losses."""
    return LOSSES.names()


@dataclass(frozen=True)
class LossTerm:
    """One ``name:weight`` item of a loss spec."""

    name: str
    weight: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight) or self.weight < 0:
            raise InputError(
                f"loss weight of {self.name!r} must be a finite number >= 0, got {self.weight}"
            )


def parse_loss_spec(spec: str | Sequence[LossTerm]) -> tuple[LossTerm, ...]:
    """``"kd:0.9,at:1000,ce:0.1"`` -> terms; a bare name takes the loss's default weight.

    Unknown names raise :class:`~ttmpd._registry.UnknownNameError` listing the choices;
    unparsable weights, duplicates and empty specs raise InputError.
    """
    if not isinstance(spec, str):
        terms = tuple(spec)
        if not terms or not all(isinstance(t, LossTerm) for t in terms):
            raise InputError("give a loss spec like 'kd:0.9,ce:0.1' or a list of LossTerm")
        for term in terms:
            LOSSES.get(term.name)
        return terms
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise InputError(
            f"cannot parse loss spec {spec!r}; give name[:weight] items separated by commas, "
            "e.g. kd:0.9,ce:0.1"
        )
    terms, seen = [], set()
    for item in items:
        name, sep, weight_text = (part.strip() for part in item.partition(":"))
        cls = LOSSES.get(name.lower())
        if sep:
            try:
                weight = float(weight_text)
            except ValueError:
                raise InputError(
                    f"loss weight {weight_text!r} of {name!r} in {spec!r} is not a number; "
                    "write e.g. kd:0.9"
                ) from None
        else:
            weight = cls.default_weight
        if cls.name in seen:
            raise InputError(f"loss {cls.name!r} appears twice in {spec!r}; list it once")
        seen.add(cls.name)
        terms.append(LossTerm(cls.name, weight))
    return tuple(terms)


def spec_needs_features(spec: str | Sequence[LossTerm]) -> bool:
    """Whether any loss of ``spec`` uses hooked intermediate features."""
    return any(LOSSES.get(t.name).needs_features for t in parse_loss_spec(spec))


class CombinedLoss(nn.Module):
    """A weighted sum of losses; ``forward`` returns ``(total, {name: unweighted value})``."""

    def __init__(self, spec: str | Sequence[LossTerm], context: LossContext) -> None:
        super().__init__()
        self.terms = parse_loss_spec(spec)
        self.losses = nn.ModuleDict({t.name: LOSSES.get(t.name)(context) for t in self.terms})
        self.weights = {t.name: t.weight for t in self.terms}

    @property
    def needs_features(self) -> bool:
        return any(loss.needs_features for loss in self.losses.values())

    def forward(
        self, student: Features, teacher: Features
    ) -> tuple[torch.Tensor, dict[str, float]]:
        teacher = teacher.detach()
        total = student.logits.new_zeros(())
        parts = {}
        for name, loss in self.losses.items():
            value = loss(student, teacher)
            parts[name] = float(value.detach())
            total = total + self.weights[name] * value
        return total, parts
