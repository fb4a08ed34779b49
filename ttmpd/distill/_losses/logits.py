"""Losses on logits only: pseudo-label cross-entropy, KD (Hinton 2015), DKD (Zhao 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._features import Features
from ._base import LOSSES, DistillLoss, LossContext


def pseudo_labels(teacher: Features) -> torch.Tensor:
    """The teacher's hard predictions ``argmax z_t`` (the only "labels" test time has)."""
    return teacher.logits.argmax(1)


@LOSSES.register("ce")
class PseudoLabelCE(DistillLoss):
    """Cross-entropy with the teacher's pseudo labels.

    ``L = CE(z_s, argmax z_t)``, averaged over the batch. Default weight 1 (0.1 next to KD,
    as in RepDistiller's ``-r 0.1``). Ground-truth labels are never used for training.
    """

    name = "ce"
    default_weight = 1.0

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        return F.cross_entropy(student.logits, pseudo_labels(teacher))


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    p_t = F.softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * t * t


@LOSSES.register("kd")
class KDLoss(DistillLoss):
    """Knowledge distillation — Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network", 2015.

    ``L = T^2 * KL(softmax(z_t / T) || softmax(z_s / T))`` (batch mean). The ``T^2`` keeps
    gradient magnitudes comparable across temperatures. Temperature ``T = 4``; default
    weight 0.9 (with ``ce:0.1``, RepDistiller's setting). Zero iff the logits agree up to a
    per-sample constant.
    """

    name = "kd"
    default_weight = 0.9

    def __init__(self, context: LossContext, temperature: float = 4.0) -> None:
        super().__init__(context)
        self.temperature = temperature

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        return kd_loss(student.logits, teacher.logits, self.temperature)


@LOSSES.register("dkd")
class DKDLoss(DistillLoss):
    """Decoupled knowledge distillation — Zhao et al., CVPR 2022.

    With the target class ``y = argmax z_t`` (teacher pseudo label; no ground truth at test
    time), temperature ``T``:

    - TCKD ``= T^2 KL([p_t^y, 1 - p_t^y] || [p_s^y, 1 - p_s^y])`` (binary target/non-target);
    - NCKD ``= T^2 KL(p̂_t || p̂_s)`` over the non-target classes only (target masked out by
      subtracting 1000 from its logit before the softmax);
    - ``L = alpha * TCKD + beta * NCKD``, ``alpha = 1``, ``beta = 8``, ``T = 4``.

    Default weight 1. Zero when the student's logits equal the teacher's.
    """

    name = "dkd"
    default_weight = 1.0

    def __init__(
        self, context: LossContext, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0
    ) -> None:
        super().__init__(context)
        self.alpha, self.beta, self.temperature = alpha, beta, temperature

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        t = self.temperature
        zs, zt = student.logits, teacher.logits
        mask = F.one_hot(pseudo_labels(teacher), zs.shape[1]).bool()
        ps, pt = F.softmax(zs / t, 1), F.softmax(zt / t, 1)
        bs = torch.stack([(ps * mask).sum(1), (ps * ~mask).sum(1)], 1).clamp_min(1e-8)
        bt = torch.stack([(pt * mask).sum(1), (pt * ~mask).sum(1)], 1).clamp_min(1e-8)
        tckd = F.kl_div(bs.log(), bt, reduction="batchmean") * t * t
        log_ns = F.log_softmax(zs / t - 1000.0 * mask, 1)
        nt = F.softmax(zt / t - 1000.0 * mask, 1)
        nckd = F.kl_div(log_ns, nt, reduction="batchmean") * t * t
        return self.alpha * tckd + self.beta * nckd
