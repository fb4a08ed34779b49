"""Label-free accuracy proxies of a pruned candidate, and their combination.

Both are computed on a calibration batch of unlabeled test samples after re-estimating the
candidate's BatchNorm statistics on that batch (adaptive BN, as in EagleEye):

* ``agreement`` (V1): share of samples whose arg-max matches the unpruned model's pseudo
  label — how much of the teacher's behaviour survives without any fine-tuning;
* ``kd_gap`` (V2): ``T² · mean KL(softmax(t/T) ‖ softmax(s/T))`` with ``T = 4`` — how much
  knowledge distillation must still recover.

:class:`AccuracyModel` maps them to one predicted fine-tuned accuracy (here: agreement
with the teacher after fine-tuning), ``acc = clip(b0 + b1·V1 + b2·V2, 0, 1)``. Its defaults
(``b0 = 0.1, b1 = 0.9, b2 = −0.05``) encode "fine-tuning recovers part of what was lost,
less when the distillation gap is large"; :meth:`AccuracyModel.fit` replaces them by least
squares on a few candidates that were actually fine-tuned. Users add proxies to
:data:`PROXIES` with the same signature ``(student_logits, teacher_logits) -> float``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._registry import Registry
from ..errors import InputError

Proxy = Callable[[torch.Tensor, torch.Tensor], float]
PROXIES: Registry[Proxy] = Registry("accuracy proxy")


@PROXIES.register("agreement")
def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """V1: fraction of samples where ``argmax(student) == argmax(teacher)``."""
    return float((student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean())


@PROXIES.register("kd_gap")
def kd_gap(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> float:
    """V2: ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` averaged over samples (nats)."""
    t = F.log_softmax(teacher_logits / temperature, dim=1)
    s = F.log_softmax(student_logits / temperature, dim=1)
    kl = F.kl_div(s, t, log_target=True, reduction="batchmean")
    return float(kl) * temperature**2


@dataclass(frozen=True)
class AccuracyModel:
    """``predicted accuracy = clip(intercept + w_agreement·V1 + w_kd_gap·V2, 0, 1)``."""

    intercept: float = 0.1
    w_agreement: float = 0.9
    w_kd_gap: float = -0.05

    def predict(self, v1: float | np.ndarray, v2: float | np.ndarray) -> np.ndarray:
        raw = self.intercept + self.w_agreement * np.asarray(v1) + self.w_kd_gap * np.asarray(v2)
        return np.clip(raw, 0.0, 1.0)

    @classmethod
    def fit(
        cls, v1: Sequence[float], v2: Sequence[float], accuracy: Sequence[float]
    ) -> AccuracyModel:
        """Least-squares fit on candidates whose fine-tuned accuracy was measured (>= 3)."""
        if len(v1) < 3 or not len(v1) == len(v2) == len(accuracy):
            raise InputError("fitting the accuracy model needs >= 3 candidates with V1, V2, acc")
        design = np.column_stack([np.ones(len(v1)), v1, v2])
        coef, *_ = np.linalg.lstsq(design, np.asarray(accuracy, dtype=float), rcond=None)
        return cls(float(coef[0]), float(coef[1]), float(coef[2]))


def agreement_proxies(
    model: torch.nn.Module, images: torch.Tensor, teacher_logits: torch.Tensor
) -> tuple[float, float]:
    """``(V1, V2)`` of ``model`` on ``images`` against the teacher's logits (no grad)."""
    with torch.no_grad():
        logits = model(images)
    return agreement(logits, teacher_logits), kd_gap(logits, teacher_logits)
