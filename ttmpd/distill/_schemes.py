"""Training schemes: who teaches whom, beyond the cached teacher -> student losses.

Every scheme adds terms to the loss of a step and may own trainable modules; the trainer
calls ``extra_loss`` after the configured teacher -> student losses, optimises
``trainable()`` together with the student, and calls ``after_step`` once the student step
is done. Scheme modules are part of the resumable training state, never of the saved
student.

- ``standard``: teacher -> student only (the configured loss spec).
- ``byot``: self-distillation, "Be Your Own Teacher" (Zhang et al., ICCV 2019).
- ``dml``: deep mutual learning (Zhang et al., CVPR 2018) with a peer student.
- ``adversarial``: adversarial KD (Xu et al., 2018 / Wang et al., 2018) with a logit
  discriminator.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import Registry
from ..errors import InputError
from ._connectors import embedding
from ._features import Features
from ._losses import LossContext, kd_loss


class Scheme(nn.Module):
    """Base scheme: no extra terms (``standard``)."""

    name: ClassVar[str] = "standard"
    needs_student_features: ClassVar[bool] = False

    def __init__(self, student: nn.Module, context: LossContext) -> None:
        super().__init__()
        self.context = context

    def trainable(self) -> list[nn.Parameter]:
        """Parameters optimised together with the student."""
        return list(self.parameters())

    def extra_loss(
        self, x: torch.Tensor, student: Features, teacher: Features
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return student.logits.new_zeros(()), {}

    def after_step(self, student: Features, teacher: Features) -> dict[str, float]:
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        return None


SCHEMES: Registry[type[Scheme]] = Registry("training scheme")
SCHEMES.register("standard")(Scheme)


def list_schemes() -> list[str]:
    return SCHEMES.names()


@SCHEMES.register("byot")
class SelfDistillation(Scheme):
    """Be Your Own Teacher — Zhang et al., ICCV 2019.

    Every hooked student layer but the last gets an auxiliary classifier (global average
    pool + linear); the deepest classifier is the student's own head. With ``y`` the teacher
    pseudo label, ``z`` the student's logits and ``e`` pooled features, per auxiliary ``i``:
    ``(1 - alpha) CE(z_i, y) + alpha KD_T(z_i, z.detach()) + lambda ||h_i(e_i) -
    e_last.detach()||^2`` (``h_i`` a linear hint connector), ``alpha = 0.5``, ``T = 3``,
    ``lambda = 0.1``. The auxiliary heads are discarded after training; they shape the
    shared student features. Needs at least 2 hooked layers.
    """

    name = "byot"
    needs_student_features = True

    def __init__(
        self, student: nn.Module, context: LossContext, alpha: float = 0.5, lam: float = 0.1
    ) -> None:
        super().__init__(student, context)
        shapes = context.student_shapes
        if len(shapes) < 2:
            raise InputError("scheme 'byot' needs at least 2 hooked student feature layers")
        self.alpha, self.lam, self.temperature = alpha, lam, 3.0
        last = shapes[-1][0]
        self.heads = nn.ModuleList(nn.Linear(s[0], context.num_classes) for s in shapes[:-1])
        self.hints = nn.ModuleList(nn.Linear(s[0], last) for s in shapes[:-1])

    def extra_loss(self, x, student, teacher):
        y = teacher.logits.argmax(1)
        deep = embedding(student.features[-1]).detach()
        target = student.logits.detach()
        total, parts = student.logits.new_zeros(()), {}
        for i, (head, hint) in enumerate(zip(self.heads, self.hints, strict=True)):
            e = embedding(student.features[i])
            z = head(e)
            term = (1 - self.alpha) * F.cross_entropy(z, y)
            term = term + self.alpha * kd_loss(z, target, self.temperature)
            term = term + self.lam * (hint(e) - deep).pow(2).mean()
            parts[f"byot_aux{i}"] = float(term.detach())
            total = total + term
        return total, parts


@SCHEMES.register("dml")
class MutualLearning(Scheme):
    """Deep mutual learning — Zhang et al., CVPR 2018.

    A peer student (a copy of the student with seeded multiplicative weight noise of 1%,
    so the two do not start identical) learns alongside: the student gets
    ``KL(p_peer.detach() || p_s)``; the peer gets ``0.9 KD(z_peer, z_t) + 0.1 CE(z_peer, y)
    + KL(p_s.detach() || p_peer)`` (``T = 4`` for KD, ``T = 1`` for the mutual terms). Both
    train with the same optimiser; the student is what is saved.
    """

    name = "dml"

    def __init__(self, student: nn.Module, context: LossContext, noise: float = 0.01) -> None:
        super().__init__(student, context)
        self.peer = copy.deepcopy(student)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in self.peer.parameters():
                p.mul_(1 + noise * torch.randn(p.shape, generator=generator).to(p.device))

    def extra_loss(self, x, student, teacher):
        z_peer = self.peer(x)
        y = teacher.logits.argmax(1)
        mutual_s = kd_loss(student.logits, z_peer.detach(), 1.0)
        mutual_p = kd_loss(z_peer, student.logits.detach(), 1.0)
        peer = 0.9 * kd_loss(z_peer, teacher.logits, 4.0) + 0.1 * F.cross_entropy(z_peer, y)
        parts = {"dml_mutual": float(mutual_s.detach()), "dml_peer": float(peer.detach())}
        return mutual_s + mutual_p + peer, parts


@SCHEMES.register("adversarial")
class AdversarialKD(Scheme):
    """Adversarial KD — after Xu et al. (2018) and Wang et al. (KDGAN, NeurIPS 2018).

    A discriminator ``D`` (MLP on logits: classes -> 64 -> 1) learns to tell teacher logits
    (real) from student logits (fake) with ``BCE(D(z_t), 1) + BCE(D(z_s), 0)`` and its own
    Adam optimiser (lr 2e-4, betas 0.5/0.999), one step after every student step. The
    student gets the adversarial term ``w * BCE(D(z_s), 1)``, ``w = 0.1``, on top of the
    configured losses.
    """

    name = "adversarial"

    def __init__(self, student: nn.Module, context: LossContext, weight: float = 0.1) -> None:
        super().__init__(student, context)
        c = context.num_classes
        self.weight = weight
        self.discriminator = nn.Sequential(nn.Linear(c, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
        self.d_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999)
        )

    def trainable(self) -> list[nn.Parameter]:
        return []  # the discriminator has its own optimiser

    def extra_loss(self, x, student, teacher):
        score = self.discriminator(student.logits)
        adv = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
        return self.weight * adv, {"adv_g": float(adv.detach())}

    def after_step(self, student, teacher):
        self.d_optimizer.zero_grad(set_to_none=True)
        real = self.discriminator(teacher.logits.detach())
        fake = self.discriminator(student.logits.detach())
        loss = F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        loss.backward()
        self.d_optimizer.step()
        return {"adv_d": float(loss.detach())}

    def extra_state(self) -> dict:
        return {"d_optimizer": self.d_optimizer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.d_optimizer.load_state_dict(state["d_optimizer"])
