"""Contrastive representation distillation (CRD) with momentum memory banks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from .._connectors import embedding
from .._features import Features
from ._base import LOSSES, DistillLoss, LossContext


@LOSSES.register("crd")
class CRDLoss(DistillLoss):
    """Contrastive representation distillation — Tian, Krishnan & Isola, ICLR 2020.

    Student and teacher embeddings (last hooked layer, pooled) go through trainable linear
    heads to ``d = 128`` and are L2-normalised: ``v_s``, ``v_t``. Two memory banks hold one
    vector per fine-tuning sample, ``M_s`` and ``M_t`` (momentum 0.5 updates, no gradient).
    For sample ``i`` with ``K`` random negatives ``j``:
    ``L_s = -log( exp(v_s . M_t[i] / tau) / sum_{k in {i} u negatives} exp(v_s . M_t[k] / tau) )``,
    symmetrically ``L_t`` with ``v_t`` against ``M_s``; ``L = mean(L_s + L_t)``,
    ``tau = 0.07``, ``K = min(4096, N - 1)``. This is the InfoNCE (softmax) form of CRD's
    objective rather than its NCE form with a noise-contrastive normaliser. Needs the
    sample indices of the batch (``Features.index``; the trainer provides them) and the
    subset size. Default weight 0.8 (RepDistiller).
    """

    name = "crd"
    default_weight = 0.8
    needs_features = True

    def __init__(
        self,
        context: LossContext,
        dim: int = 128,
        temperature: float = 0.07,
        negatives: int = 4096,
        momentum: float = 0.5,
    ) -> None:
        super().__init__(context)
        if context.num_samples < 2:
            raise InputError(
                "loss 'crd' needs the fine-tuning subset size (at least 2) for its memory "
                "banks; build it through the trainer or pass LossContext(num_samples=...)"
            )
        ds, dt = context.student_shapes[-1][0], context.teacher_shapes[-1][0]
        n = context.num_samples
        self.embed_s, self.embed_t = nn.Linear(ds, dim), nn.Linear(dt, dim)
        self.temperature, self.momentum = temperature, momentum
        self.negatives = min(negatives, n - 1)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("memory_s", F.normalize(torch.randn(n, dim, generator=g), dim=1))
        self.register_buffer("memory_t", F.normalize(torch.randn(n, dim, generator=g), dim=1))

    def _nce(self, v: torch.Tensor, memory: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        n = memory.shape[0]
        # negatives: K random other samples (offset by 1..n-1 so the positive is excluded)
        offset = torch.randint(1, n, (len(index), self.negatives), device=v.device)
        candidates = torch.cat([index.unsqueeze(1), (index.unsqueeze(1) + offset) % n], 1)
        scores = torch.einsum("bd,bkd->bk", v, memory[candidates]) / self.temperature
        return F.cross_entropy(scores, torch.zeros(len(v), dtype=torch.long, device=v.device))

    def compute(self, student: Features, teacher: Features) -> torch.Tensor:
        index = student.index if student.index is not None else teacher.index
        if index is None:
            raise InputError("loss 'crd' needs Features.index (sample indices of the batch)")
        v_s = F.normalize(self.embed_s(embedding(student.features[-1])), dim=1)
        v_t = F.normalize(self.embed_t(embedding(teacher.features[-1])), dim=1)
        loss = self._nce(v_s, self.memory_t, index) + self._nce(v_t, self.memory_s, index)
        if self.training:
            with torch.no_grad():
                m = self.momentum
                self.memory_s[index] = F.normalize(m * self.memory_s[index] + (1 - m) * v_s, dim=1)
                self.memory_t[index] = F.normalize(m * self.memory_t[index] + (1 - m) * v_t, dim=1)
        return loss
