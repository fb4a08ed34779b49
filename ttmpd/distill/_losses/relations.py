"""Losses matching relations between samples or channels: SP, RKD, PKT, CC, NST.

They compare structures whose size does not depend on channel counts (batch x batch
similarities, channel-set distributions), so they need no connectors. RKD, PKT and CC use
the embedding of the last hooked layer (global-average-pooled when 4-D: the penultimate
features of a ResNet when its last stage is hooked).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._connectors import embedding, pool_to_match
from .._features import Features
from ._base import LOSSES, DistillLoss


@LOSSES.register("sp")
class SPLoss(DistillLoss):
    """Similarity-preserving KD — Tung & Mori, ICCV 2019.

    Per layer, ``G = row_normalize(Q Q^T)`` with ``Q = vec(f)`` of shape ``(B, C H W)``;
    ``L = mean_l ||G_s - G_t||_F^2 / B^2``. Default weight 3000. Zero when the batch
    similarity structure agrees.
    """

    name = "sp"
    default_weight = 3000.0
    needs_features = True

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        values = []
        for fs, ft in zip(student.features, teacher.features, strict=True):
            b = fs.shape[0]
            gs = F.normalize(fs.flatten(1) @ fs.flatten(1).t(), dim=1)
            gt = F.normalize(ft.flatten(1) @ ft.flatten(1).t(), dim=1)
            values.append((gs - gt).pow(2).sum() / (b * b))
        return torch.stack(values).mean()


def _pdist(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    sq = e.pow(2).sum(1)
    d = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2 * e @ e.t()).clamp_min(eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


@LOSSES.register("rkd")
class RKDLoss(DistillLoss):
    """Relational KD — Park et al., CVPR 2019 (distance + angle).

    On embeddings ``e``: distance potential ``psi_D(i, j) = ||e_i - e_j|| / mu`` (``mu`` the
    mean non-zero distance in the batch) and angle potential ``psi_A(i, j, k) =
    <(e_i - e_j)/||.||, (e_k - e_j)/||.||>``; ``L = 25 * Huber(psi_D^s, psi_D^t) +
    50 * Huber(psi_A^s, psi_A^t)``. Default weight 1. Zero when the embeddings agree up to
    rotation, translation and (for distances) scale.
    """

    name = "rkd"
    default_weight = 1.0
    needs_features = True

    def __init__(self, context, w_dist: float = 25.0, w_angle: float = 50.0) -> None:
        super().__init__(context)
        self.w_dist, self.w_angle = w_dist, w_angle

    @staticmethod
    def _dist(e: torch.Tensor) -> torch.Tensor:
        d = _pdist(e)
        return d / d[d > 0].mean().clamp_min(1e-12)

    @staticmethod
    def _angle(e: torch.Tensor) -> torch.Tensor:
        diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        es, et = embedding(student.features[-1]), embedding(teacher.features[-1])
        dist = F.smooth_l1_loss(self._dist(es), self._dist(et))
        angle = F.smooth_l1_loss(self._angle(es), self._angle(et))
        return self.w_dist * dist + self.w_angle * angle


@LOSSES.register("pkt")
class PKTLoss(DistillLoss):
    """Probabilistic knowledge transfer — Passalis & Tefas, ECCV 2018.

    On L2-normalised embeddings, cosine-kernel conditional probabilities
    ``p_{i|j} = K(e_i, e_j) / sum_k K(e_k, e_j)`` with ``K = (cos + 1) / 2``;
    ``L = mean_{i,j} p^t_{i|j} log(p^t_{i|j} / p^s_{i|j})`` (KL, eps = 1e-7).
    Default weight 30000 (RepDistiller). Zero when the kernels agree.
    """

    name = "pkt"
    default_weight = 30000.0
    needs_features = True

    @staticmethod
    def _probabilities(e: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
        e = F.normalize(e, dim=1, eps=eps)
        k = (e @ e.t() + 1.0) / 2.0
        return k / k.sum(1, keepdim=True)

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        eps = 1e-7
        ps = self._probabilities(embedding(student.features[-1]))
        pt = self._probabilities(embedding(teacher.features[-1]))
        return (pt * torch.log((pt + eps) / (ps + eps))).mean()


@LOSSES.register("cc")
class CCLoss(DistillLoss):
    """Correlation congruence — Peng et al., ICCV 2019.

    On L2-normalised embeddings, the Gaussian RBF correlation ``k(x, y) = exp(-gamma ||x -
    y||^2) = exp(-2 gamma) exp(2 gamma x.y)`` approximated by its order-P Taylor series
    ``sum_{p=0}^{P} exp(-2 gamma) (2 gamma)^p / p! (x.y)^p`` (P = 2, gamma = 0.4);
    ``L = ||C_s - C_t||_F^2 / B^2``. Default weight 1. Zero when the correlations agree.
    """

    name = "cc"
    default_weight = 1.0
    needs_features = True

    def __init__(self, context, gamma: float = 0.4, order: int = 2) -> None:
        super().__init__(context)
        self.gamma, self.order = gamma, order

    def _correlation(self, e: torch.Tensor) -> torch.Tensor:
        e = F.normalize(e, dim=1)
        dot = e @ e.t()
        g = 2 * self.gamma
        return sum(
            math.exp(-g) * g**p / math.factorial(p) * dot.pow(p) for p in range(self.order + 1)
        )

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        cs = self._correlation(embedding(student.features[-1]))
        ct = self._correlation(embedding(teacher.features[-1]))
        return (cs - ct).pow(2).sum() / (len(cs) ** 2)


def _poly_mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared MMD with kernel ``(a.b)^2`` between channel sets ``x (B, Cx, N)``, ``y``."""
    kxx = (x @ x.transpose(1, 2)).pow(2).mean((1, 2))
    kyy = (y @ y.transpose(1, 2)).pow(2).mean((1, 2))
    kxy = (x @ y.transpose(1, 2)).pow(2).mean((1, 2))
    return (kxx + kyy - 2 * kxy).mean()


@LOSSES.register("nst")
class NSTLoss(DistillLoss):
    """Neuron selectivity transfer — Huang & Wang, 2017.

    Each channel's spatial map is a sample ``f_c / ||f_c||_2``; student and teacher channels
    are two distributions compared by the squared maximum mean discrepancy with the
    polynomial kernel ``k(a, b) = (a.b)^2``: ``L = mean_l [mean K_tt + mean K_ss - 2 mean
    K_st]``. Channel counts may differ; spatial sizes are pooled to the smaller. Default
    weight 50 (RepDistiller). Zero when the channel sets agree (e.g. identical features).
    """

    name = "nst"
    needs_maps = True
    default_weight = 50.0
    needs_features = True

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        values = []
        for fs, ft in zip(student.features, teacher.features, strict=True):
            fs, ft = pool_to_match(fs, ft)
            s = F.normalize(fs.flatten(2), dim=2)
            t = F.normalize(ft.flatten(2), dim=2)
            values.append(_poly_mmd(s, t))
        return torch.stack(values).mean()
