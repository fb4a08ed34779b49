"""Multiple-choice knapsack: one option per group, maximum total value for a total saving.

Group ``g`` offers options ``i = 0 … n_g − 1`` with a ``saving[g][i]`` (e.g. predicted ms
saved by that much pruning of ``g`` alone) and a ``value[g][i]`` (e.g. the log of the
predicted accuracy relative to the unpruned model; option 0, "leave the group alone", is
usually ``(0, 0)``). :func:`pareto_choices` returns every choice of one option per group
that no other choice beats on both totals — the exact Pareto front of the additive problem,
built group by group with dominated partial choices dropped (a partial choice that saves
less and is worth less than another can never complete into a better choice). The best
choice for any required saving is then the most valuable front point that saves enough;
a caller whose real cost is not additive prices the front points exactly and keeps the most
valuable one that fits (:func:`best_feasible`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError

#: Upper bound on front points kept between groups; beyond it the front is thinned evenly
#: by saving (the extremes are always kept), which makes the result approximate.
MAX_FRONT = 4096


def _front(saving: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Indices of the Pareto-optimal points (more saving and more value are better),
    sorted by increasing saving."""
    order = np.lexsort((-value, -saving))  # saving descending, then value descending
    keep, best = [], -np.inf
    for i in order:
        if value[i] > best:
            keep.append(i)
            best = value[i]
    return np.array(keep[::-1], dtype=int)


def pareto_choices(
    saving: Sequence[Sequence[float]], value: Sequence[Sequence[float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(choices, total_saving, total_value)`` of the Pareto front, by increasing saving.

    ``choices`` is ``(P, G)``: the option index chosen in each of the ``G`` groups.
    """
    if len(saving) != len(value) or not saving:
        raise InputError("knapsack needs the same number (>= 1) of saving and value lists")
    choices = np.zeros((1, 0), dtype=int)
    total_s, total_v = np.zeros(1), np.zeros(1)
    for g, (s, v) in enumerate(zip(saving, value, strict=True)):
        s, v = np.asarray(s, dtype=float), np.asarray(v, dtype=float)
        if s.shape != v.shape or s.ndim != 1 or not len(s):
            raise InputError(f"group {g}: savings and values must be equal, non-empty 1-D lists")
        cand_s = (total_s[:, None] + s[None, :]).ravel()
        cand_v = (total_v[:, None] + v[None, :]).ravel()
        keep = _front(cand_s, cand_v)
        if len(keep) > MAX_FRONT:
            keep = keep[np.unique(np.linspace(0, len(keep) - 1, MAX_FRONT).round().astype(int))]
        parent, option = np.divmod(keep, len(s))
        choices = np.concatenate([choices[parent], option[:, None]], axis=1)
        total_s, total_v = cand_s[keep], cand_v[keep]
    return choices, total_s, total_v


def best_feasible(
    choices: np.ndarray,
    total_value: np.ndarray,
    fits: Callable[[np.ndarray], np.ndarray],
) -> int | None:
    """Row of ``choices`` with the highest value among those ``fits`` accepts (a boolean
    per row, e.g. exact predicted latency <= budget), or None when none fits."""
    ok = np.asarray(fits(choices), dtype=bool)
    if not ok.any():
        return None
    values = np.where(ok, total_value, -np.inf)
    return int(np.argmax(values))
