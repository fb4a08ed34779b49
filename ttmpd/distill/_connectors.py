"""Connectors: small trainable maps from a student feature to the teacher's shape.

After pruning, a student layer has fewer channels than the teacher's, so hint-style losses
(FitNet, FSP, AB, VID, ...) compare ``connector(f_s)`` with ``f_t``. A connector is a 1x1
convolution for 4-D features (plus adaptive average pooling when the spatial sizes differ)
and a linear layer for 2-D features. It is initialised as a (partial) identity: with equal
channel counts and ``f_s == f_t`` the connector output equals the teacher feature, so a
loss that should vanish for identical features does so before any training. Connectors
live inside the loss modules and are trained with the student.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


class Connector(nn.Module):
    """``f_s (B, Cs[, H, W]) -> (B, Ct[, Ht, Wt])``: identity-initialised 1x1 conv / linear."""

    def __init__(self, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> None:
        super().__init__()
        s, t = tuple(student_shape), tuple(teacher_shape)
        if len(s) != len(t) or len(s) not in (1, 3):
            raise InputError(
                f"cannot connect a student feature of per-sample shape {s} to a teacher "
                f"feature of shape {t}; hook layers with matching ranks (both 4-D or both 2-D)"
            )
        self.out_hw = t[1:] if len(t) == 3 else None
        if len(s) == 3:
            self.proj = nn.Conv2d(s[0], t[0], 1, bias=False)
            with torch.no_grad():
                nn.init.eye_(self.proj.weight[:, :, 0, 0])
        else:
            self.proj = nn.Linear(s[0], t[0], bias=False)
            with torch.no_grad():
                nn.init.eye_(self.proj.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        if self.out_hw is not None and tuple(y.shape[-2:]) != tuple(self.out_hw):
            y = F.adaptive_avg_pool2d(y, self.out_hw)
        return y


def pool_to_match(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two 4-D maps to the smaller one's spatial size."""
    if a.ndim != 4 or a.shape[-2:] == b.shape[-2:]:
        return a, b
    ha, hb = a.shape[-2] * a.shape[-1], b.shape[-2] * b.shape[-1]
    if ha > hb:
        return F.adaptive_avg_pool2d(a, b.shape[-2:]), b
    return a, F.adaptive_avg_pool2d(b, a.shape[-2:])


def embedding(feature: torch.Tensor) -> torch.Tensor:
    """``(B, D)``: global-average-pooled 4-D maps, flattened otherwise."""
    if feature.ndim == 4:
        return feature.mean((2, 3))
    return feature.flatten(1)
