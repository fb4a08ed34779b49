"""Label-free accuracy proxies of a pruned candidate, and their combination.

Both proxies are computed on a batch of unlabeled test samples (the proxy images) after
re-estimating the candidate's BatchNorm statistics on that batch (adaptive BN, as in
EagleEye):

* ``agreement`` (V1): share of samples whose arg-max matches the unpruned model's pseudo
  label — how much of the teacher's behaviour survives without any fine-tuning;
* ``kd_gap`` (V2): ``T² · mean KL(softmax(t/T) ‖ softmax(s/T))`` with ``T = 4`` — how much
  knowledge distillation must still recover.

:class:`AccuracyModel` maps them, together with the share of importance mass the candidate
keeps (``kept``: sum of the kept channels' importance over the sum of all, the quantity
magnitude pruning ranks by), to one predicted fine-tuned accuracy relative to the teacher:

    acc = scale · kept^a · (V1 + 0.01)^b · exp(−c · V2)

Defaults ``scale = 1, a = 1, b = 1/4, c = 1/32`` (the unpruned model predicts ≈ 1). They were
chosen on 3 × 40 random prunes of the shipped ResNet-20, each fine-tuned with the product's
distillation (MNIST test stream, motion blur with seeds 0 and 1, impulse noise with seed 0;
``benchmarks/proxy_correlation.py`` reports on an unseen seed): what is kept bounds what
fine-tuning can recover, V1/V2 say how far the candidate has to be brought back. The
multiplicative form matters: a linear, clipped combination saturated at 0 for most heavily
pruned candidates and ranked them as ties. :meth:`AccuracyModel.fit` replaces the
defaults by least squares in log space on a few candidates that were actually fine-tuned
(exponents kept ``>= 0`` so the model stays monotone). Users add proxies to
:data:`PROXIES` with the same signature ``(student_logits, teacher_logits) -> float``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import nnls

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


#: Added to V1 before its power: a candidate that agrees nowhere still ranks by kept and V2.
AGREEMENT_FLOOR = 0.01


@dataclass(frozen=True)
class AccuracyModel:
    """``acc = scale · kept^w_kept · (V1 + 0.01)^w_agreement · exp(−w_kd_gap · V2)``.

    ``kept`` and ``V1`` are shares in ``[0, 1]``, ``V2`` is in nats (``T²``-scaled); the
    result is the predicted fine-tuned accuracy relative to the unpruned model. With the
    defaults it is a ranking score, not a calibrated level: a ResNet-20 prune that fine-tunes
    back to 97% of the teacher's accuracy scores about 0.3. :meth:`fit` calibrates the level.
    """

    scale: float = 1.0
    w_kept: float = 1.0
    w_agreement: float = 0.25
    w_kd_gap: float = 1 / 32

    def predict(
        self,
        v1: float | np.ndarray,
        v2: float | np.ndarray,
        kept: float | np.ndarray = 1.0,
    ) -> np.ndarray:
        return np.exp(self._design(v1, v2, kept) @ self._coef)

    @property
    def _coef(self) -> np.ndarray:
        return np.array([np.log(self.scale), self.w_kept, self.w_agreement, self.w_kd_gap])

    @staticmethod
    def _design(v1, v2, kept) -> np.ndarray:
        v1, v2 = np.asarray(v1, dtype=float), np.asarray(v2, dtype=float)
        kept = np.broadcast_to(np.asarray(kept, dtype=float), v1.shape)
        if np.any(kept <= 0):
            raise InputError("kept importance share must be > 0")
        ones = np.ones_like(v1)
        return np.stack([ones, np.log(kept), np.log(v1 + AGREEMENT_FLOOR), -v2], axis=-1)

    @classmethod
    def fit(
        cls,
        v1: Sequence[float],
        v2: Sequence[float],
        accuracy: Sequence[float],
        kept: Sequence[float] | float = 1.0,
    ) -> AccuracyModel:
        """Least squares of ``log(accuracy)`` on ``(1, log kept, log(V1 + 0.01), −V2)`` over
        candidates whose fine-tuned accuracy was measured (>= 4), with the three exponents
        constrained ``>= 0`` (non-negative least squares on centred columns)."""
        accuracy = np.asarray(accuracy, dtype=float)
        if len(v1) < 4 or not len(v1) == len(v2) == len(accuracy):
            raise InputError("fitting the accuracy model needs >= 4 candidates with V1, V2, acc")
        if np.any(accuracy <= 0):
            raise InputError("fine-tuned accuracies must be > 0 to fit the accuracy model")
        design = cls._design(v1, v2, kept)[:, 1:]
        target = np.log(accuracy)
        weights, _ = nnls(design - design.mean(0), target - target.mean())
        log_scale = float(target.mean() - design.mean(0) @ weights)
        return cls(float(np.exp(log_scale)), *(float(w) for w in weights))


def agreement_proxies(
    model: torch.nn.Module, images: torch.Tensor, teacher_logits: torch.Tensor
) -> tuple[float, float]:
    """``(V1, V2)`` of ``model`` on ``images`` against the teacher's logits (no grad)."""
    with torch.no_grad():
        logits = model(images)
    return agreement(logits, teacher_logits), kd_gap(logits, teacher_logits)
