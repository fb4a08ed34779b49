"""Feeding ttmpd's latency model into other pruning code (Torch-Pruning in particular).

* :func:`latency_costs` — per channel group, the predicted ms saved per channel removed,
  as a DataFrame: a plain table any pruning code can use as a cost vector.
* :class:`LatencyAwareImportance` — a Torch-Pruning ``Importance`` that divides any base
  importance by the predicted saving per channel of the group being scored
  (``score = base / (ms_per_channel / mean ms_per_channel) ** alpha``), so channels whose
  removal buys more latency look less important and are pruned first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch_pruning as tp
from torch import nn

from ..lut import LatencyPredictor, PruneSavings


def latency_costs(
    predictor: LatencyPredictor, model: nn.Module, example_input: torch.Tensor, step: int = 8
) -> pd.DataFrame:
    """Columns ``group`` (root module path), ``channels``, ``ms_per_channel``.

    The cost averages the predicted saving of removing ``step`` channels (8 follows the CPU
    staircase); groups are those of :func:`ttmpd.lut.channel_groups`.
    """
    return PruneSavings(predictor, model, example_input).costs(step=step)


class LatencyAwareImportance(tp.importance.Importance):
    """Wrap a Torch-Pruning importance; scale it by each group's latency cost (see module)."""

    def __init__(
        self,
        base: tp.importance.Importance,
        predictor: LatencyPredictor,
        model: nn.Module,
        example_input: torch.Tensor,
        step: int = 8,
        alpha: float = 1.0,
    ) -> None:
        self.base = base
        self.alpha = alpha
        costs = latency_costs(predictor, model, example_input, step)
        mean = float(costs["ms_per_channel"].clip(lower=0).mean()) or 1.0
        savings = PruneSavings(predictor, model, example_input)
        names = {module: name for name, module in model.named_modules()}
        self._names = names
        by_unit = {}
        for g in savings.groups.values():
            for i, dim, _ in g.members:
                if dim == "out":
                    by_unit.setdefault(savings.extraction.units[i].name, g.id)
        cost = dict(zip(costs["group"], costs["ms_per_channel"].clip(lower=1e-9), strict=True))
        self._scale = {unit: (cost.get(gid, mean) / mean) for unit, gid in by_unit.items()}

    def __call__(self, group, **kwargs):
        scores = self.base(group, **kwargs)
        if scores is None:
            return None
        root = group[0].dep.target.module
        scale = self._scale.get(self._names.get(root, ""), 1.0)
        return scores / float(np.power(max(scale, 1e-9), self.alpha))
