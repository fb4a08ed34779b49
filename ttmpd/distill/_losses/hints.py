"""Losses matching individual feature maps: FitNet, AT, AB, VID, FT, FSP.

All use every hooked layer pair (student layer ``l`` with teacher layer ``l``) unless the
docstring says otherwise; values are averaged over layers. Where channel counts differ (a
pruned student) a :class:`~ttmpd.distill._connectors.Connector` maps the student feature to
the teacher's shape first; connectors are parameters of the loss and train with the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from .._connectors import Connector, pool_to_match
from .._features import Features
from ._base import LOSSES, DistillLoss, LossContext


def _connectors(context: LossContext) -> nn.ModuleList:
    return nn.ModuleList(
        Connector(s, t) for s, t in zip(context.student_shapes, context.teacher_shapes, strict=True)
    )


def _mean(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).mean()


@LOSSES.register("fitnet")
class FitNetLoss(DistillLoss):
    """FitNets hints — Romero et al., ICLR 2015.

    ``L = mean_l MSE(r_l(f_s^l), f_t^l)`` with ``r_l`` a trainable regressor (1x1 conv /
    linear connector, identity-initialised). The paper uses one hint layer; we use every
    hooked layer (hook one layer for the original). Default weight 100 (RepDistiller).
    """

    name = "fitnet"
    default_weight = 100.0
    needs_features = True

    def __init__(self, context: LossContext) -> None:
        super().__init__(context)
        self.connectors = _connectors(context)

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        return _mean(
            [
                F.mse_loss(c(fs), ft)
                for c, fs, ft in zip(
                    self.connectors, student.features, teacher.features, strict=True
                )
            ]
        )


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``normalize(mean_c |f|^p)`` flattened to ``(B, H*W)`` (unit L2 norm per sample)."""
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


@LOSSES.register("at")
class ATLoss(DistillLoss):
    """Attention transfer — Zagoruyko & Komodakis, ICLR 2017.

    ``Q(f) = vec(mean_c |f_c|^p) / ||vec(mean_c |f_c|^p)||_2`` (p = 2), and
    ``L = sum_l mean_{b,i} (Q(f_s^l) - Q(f_t^l))^2`` (RepDistiller's form). Channel counts
    may differ (the map averages channels); spatial sizes are pooled to the smaller one.
    Default weight 1000. Zero when the attention maps agree.
    """

    name = "at"
    needs_maps = True
    default_weight = 1000.0
    needs_features = True

    def __init__(self, context: LossContext, p: float = 2.0) -> None:
        super().__init__(context)
        self.p = p

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        total = student.logits.new_zeros(())
        for fs, ft in zip(student.features, teacher.features, strict=True):
            fs, ft = pool_to_match(fs, ft)
            total = total + (attention_map(fs, self.p) - attention_map(ft, self.p)).pow(2).mean()
        return total


@LOSSES.register("ab")
class ABLoss(DistillLoss):
    """Activation boundaries — Heo et al., AAAI 2019.

    With ``s = r(f_s)`` (connector) and the teacher neuron active where ``f_t > 0``:
    ``L = mean( 1[f_t > 0] * relu(m - s)^2 + 1[f_t <= 0] * relu(m + s)^2 )``, margin
    ``m = 1``: the student's pre-activations must be on the teacher's side of each activation
    boundary by a margin. The paper uses it to initialise the student before training; here
    it is one more jointly weighted term. Default weight 1. Zero when every student neuron
    respects the margins.
    """

    name = "ab"
    default_weight = 1.0
    needs_features = True

    def __init__(self, context: LossContext, margin: float = 1.0) -> None:
        super().__init__(context)
        self.margin = margin
        self.connectors = _connectors(context)

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        m, values = self.margin, []
        for c, fs, ft in zip(self.connectors, student.features, teacher.features, strict=True):
            s, active = c(fs), (ft > 0).to(fs.dtype)
            values.append(
                (active * F.relu(m - s).pow(2) + (1 - active) * F.relu(m + s).pow(2)).mean()
            )
        return _mean(values)


@LOSSES.register("vid")
class VIDLoss(DistillLoss):
    """Variational information distillation — Ahn et al., CVPR 2019.

    Maximises a variational lower bound of the mutual information ``I(t; s)`` with a
    Gaussian ``q(t | s) = N(mu(s), sigma^2)``: ``mu`` is a 1x1 conv - ReLU - 1x1 conv
    regressor, ``sigma_c^2 = softplus(alpha_c) + 1e-6`` per teacher channel (initial
    variance 5). ``L = mean_l mean( log sigma^2 / 2 + (f_t - mu(f_s))^2 / (2 sigma^2) )``
    (the negative log-likelihood up to a constant). Default weight 1. Never zero (the
    ``log sigma`` term); minimal when ``mu(f_s) = f_t`` with small variance.
    """

    name = "vid"
    default_weight = 1.0
    needs_features = True

    def __init__(self, context: LossContext, init_var: float = 5.0) -> None:
        super().__init__(context)
        self.regressors = nn.ModuleList()
        for s, t in zip(context.student_shapes, context.teacher_shapes, strict=True):
            if len(s) == 3:
                self.regressors.append(
                    nn.Sequential(nn.Conv2d(s[0], t[0], 1), nn.ReLU(), nn.Conv2d(t[0], t[0], 1))
                )
            else:
                self.regressors.append(
                    nn.Sequential(nn.Linear(s[0], t[0]), nn.ReLU(), nn.Linear(t[0], t[0]))
                )
        alpha0 = float(torch.log(torch.expm1(torch.tensor(init_var))))
        self.alphas = nn.ParameterList(
            nn.Parameter(torch.full((t[0],), alpha0)) for t in context.teacher_shapes
        )

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        values = []
        for reg, alpha, fs, ft in zip(
            self.regressors, self.alphas, student.features, teacher.features, strict=True
        ):
            mu = reg(fs)
            mu, ft = pool_to_match(mu, ft)
            var = F.softplus(alpha) + 1e-6
            var = var.view(1, -1, *([1] * (ft.ndim - 2)))
            values.append((0.5 * (var.log() + (ft - mu).pow(2) / var)).mean())
        return _mean(values)


def _conv_block(c_in: int, c_out: int, c_mid: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, 3, padding=1), nn.ReLU(), nn.Conv2d(c_mid, c_out, 3, padding=1)
    )


@LOSSES.register("ft")
class FTLoss(DistillLoss):
    """Factor transfer — Kim et al., NeurIPS 2018 (simplified: trained jointly).

    On the last hooked layer: a paraphraser (conv encoder ``P`` / decoder ``D``, factor rate
    0.5) encodes the teacher map into a factor ``F_t = P(f_t)``; a translator ``T`` maps the
    student map to ``F_s = T(f_s)``. With ``u(x) = vec(x) / ||vec(x)||_2``:
    ``L = mean |u(F_s) - u(F_t).detach()|`` (p = 1) ``+ MSE(D(P(f_t)), f_t)``.
    The paper first trains the paraphraser alone as an autoencoder; here its reconstruction
    term is optimised jointly, and the factor is detached in the transfer term so the
    paraphraser learns only to reconstruct (it cannot collapse toward the student).
    Default weight 1.
    """

    name = "ft"
    default_weight = 1.0
    needs_features = True

    def __init__(self, context: LossContext, rate: float = 0.5) -> None:
        super().__init__(context)
        s, t = context.student_shapes[-1], context.teacher_shapes[-1]
        if len(s) != 3 or len(t) != 3:
            raise InputError(
                f"loss 'ft' needs a 4-D last feature layer (student {s}, teacher {t}); "
                "hook a conv stage last"
            )
        k = max(1, round(t[0] * rate))
        self.encoder = _conv_block(t[0], k, t[0])
        self.decoder = _conv_block(k, t[0], t[0])
        self.translator = _conv_block(s[0], k, s[0])

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        fs, ft = student.features[-1], teacher.features[-1]
        factor_t = self.encoder(ft)
        recon = F.mse_loss(self.decoder(factor_t), ft)
        factor_s = self.translator(fs)
        factor_s, factor_t = pool_to_match(factor_s, factor_t)
        u_s = F.normalize(factor_s.flatten(1), dim=1)
        u_t = F.normalize(factor_t.detach().flatten(1), dim=1)
        return (u_s - u_t).abs().mean() + recon


def flow_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """FSP matrix ``G = a b^T / (H W)`` of two maps with equal H, W: ``(B, Ca, Cb)``."""
    a, b = pool_to_match(a, b)
    return a.flatten(2) @ b.flatten(2).transpose(1, 2) / (a.shape[-2] * a.shape[-1])


@LOSSES.register("fsp")
class FSPLoss(DistillLoss):
    """Flow of solution procedure — Yim et al., CVPR 2017.

    For consecutive hooked layers ``(l, l+1)``, ``G^l = f^l (f^{l+1})^T / (H W)`` (channels x
    channels; the larger map is average-pooled to the smaller one's size). Student maps pass
    through connectors first so both matrices have the teacher's channel counts.
    ``L = mean_l mean (G_s^l - G_t^l)^2``. Needs at least 2 hooked layers. Default weight 1.
    """

    name = "fsp"
    needs_maps = True
    default_weight = 1.0
    needs_features = True
    min_layers = 2

    def __init__(self, context: LossContext) -> None:
        super().__init__(context)
        self.connectors = _connectors(context)

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        fs = [c(f) for c, f in zip(self.connectors, student.features, strict=True)]
        ft = teacher.features
        return _mean(
            [
                (flow_matrix(fs[i], fs[i + 1]) - flow_matrix(ft[i], ft[i + 1])).pow(2).mean()
                for i in range(len(ft) - 1)
            ]
        )
