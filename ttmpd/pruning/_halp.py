"""``halp``: latency-saliency knapsack pruning interleaved with fine-tuning.

After HALP (Shen et al., "Structural Pruning via Latency-Saliency Knapsack", NeurIPS 2022),
on the unlabeled test-time setting of :class:`~ttmpd.pruning._problem.SearchProblem`.

Schedule: ``HALP_ROUNDS`` rounds ``r = 1 … R``. Each round

1. fine-tunes the current (physically pruned) model for ``HALP_STEPS`` distillation steps on
   the proxy images (:func:`~ttmpd.pruning._finetune.short_finetune`: KD towards the
   unpruned model's logits; no labels), averaging each channel's saliency
   ``|γ·∂L/∂γ + β·∂L/∂β|`` (``bn_taylor``, :mod:`ttmpd.pruning._importance`) over those steps;
2. prunes to the round's latency target ``T_r = base − (base − budget · base) · r / R`` by the
   latency-saliency knapsack: each group offers the steps of its latency staircase at or
   beyond the channels it has already lost; an option's value is minus the saliency of the
   currently kept channels it removes (least salient first), its saving the predicted
   latency it saves alone. The exact Pareto front of that multiple-choice knapsack
   (:mod:`ttmpd.pruning._mckp`) is priced exactly by the predictor and the most valuable
   state meeting ``T_r`` is applied. Removed channels stay removed.

A staircase step is the only removal count worth considering: between two steps the latency
is flat, so removing fewer channels keeps more saliency for the same cost (HALP's latency
lookup-table insight). The fine-tuning steps are part of the method, so they are part of its
prune time; the final fine-tuning that every method gets comes after.
"""

from __future__ import annotations

import copy

import numpy as np
from torch import nn

from ..errors import InputError
from ._apply import apply_plan, plan_from_removed
from ._finetune import short_finetune
from ._groups import channel_groups
from ._importance import bn_taylor_importance
from ._mck_search import staircase
from ._mckp import best_feasible, pareto_choices
from ._problem import NO_CANDIDATE, PruneResult, SearchProblem

HALP_ROUNDS = 5
HALP_STEPS = 10


class _Saliency:
    """Running mean of ``bn_taylor`` per channel of each group of the current model."""

    def __init__(self, groups: dict) -> None:
        self.groups = groups
        self.total = {gid: np.zeros(g.channels) for gid, g in groups.items()}
        self.steps = 0

    def __call__(self, model: nn.Module) -> None:
        grads = {n: p.grad.detach() for n, p in model.named_parameters() if p.grad is not None}
        for gid, group in self.groups.items():
            self.total[gid] += bn_taylor_importance(model, group, grads=grads)
        self.steps += 1

    def mean(self) -> dict[str, np.ndarray]:
        return {gid: t / max(self.steps, 1) for gid, t in self.total.items()}


def _knapsack(
    problem: SearchProblem,
    state: dict[str, int],
    saliency: dict[str, np.ndarray],
    target_ms: float,
) -> tuple[dict[str, int], float]:
    """The most salient state reachable from ``state`` down the staircases meeting
    ``target_ms`` (or, when none does, the one saving the most), and its latency."""
    groups = [g for g in problem.prunable if g.id in saliency]
    options, saving, value = [], [], []
    current_ms = float(problem.latency([state])[0])
    for g in groups:
        ks = [k for k in staircase(problem, g) if k > state[g.id]]
        ks = [state[g.id], *ks]
        lost = np.concatenate([[0.0], np.cumsum(np.sort(np.clip(saliency[g.id], 0, None)))])
        states = [{**state, g.id: k} for k in ks]
        options.append(ks)
        saving.append(current_ms - problem.latency(states))
        value.append([-lost[k - state[g.id]] for k in ks])
    choices, _, total_value = pareto_choices(saving, value)

    def to_state(row: np.ndarray) -> dict[str, int]:
        picked = {g.id: options[i][c] for i, (g, c) in enumerate(zip(groups, row, strict=True))}
        return {**state, **picked}

    latencies = problem.latency([to_state(row) for row in choices])
    best = best_feasible(choices, total_value, lambda _rows: latencies <= target_ms)
    if best is None:
        best = int(np.argmin(latencies))
    return to_state(choices[best]), float(latencies[best])


def halp(problem: SearchProblem, start: float) -> PruneResult:
    cfg = problem.config
    target = cfg.budget * problem.base_ms
    state = {g.id: 0 for g in problem.prunable}
    kept = {g.id: np.arange(g.channels) for g in problem.prunable}
    current = copy.deepcopy(problem.model).eval()
    current_ms, log = problem.base_ms, []
    rounds, r = HALP_ROUNDS, 0
    while current_ms > target:
        r += 1
        if r > 2 * rounds:  # rounds past R all aim at the budget itself
            raise InputError(NO_CANDIDATE)
        found = {g.id: g for g in channel_groups(current, problem.x, options=cfg.groups)}
        groups = {gid: found[gid] for gid in state if gid in found}
        saliency = _Saliency(groups)
        short_finetune(current, problem.images, problem.teacher, HALP_STEPS,
                       seed=cfg.seed + r, on_step=saliency)  # fmt: skip
        round_ms = max(target, problem.base_ms - (problem.base_ms - target) * r / rounds)
        new_state, new_ms = _knapsack(problem, state, saliency.mean(), round_ms)
        drop = {}
        for gid, k in new_state.items():
            if k > state[gid]:
                order = np.argsort(saliency.mean()[gid], kind="stable")
                drop[gid] = np.sort(order[: k - state[gid]]).tolist()
        log.append({"round": r, "target_ms": round_ms, "predicted_latency_ms": new_ms,
                    "removed": sum(new_state.values()), "finetune_steps": HALP_STEPS,
                    "groups_pruned": len(drop), "accepted": True})  # fmt: skip
        if not drop:
            if r >= rounds:
                raise InputError(NO_CANDIDATE)
            continue
        plan = plan_from_removed(list(found.values()), drop)
        current = apply_plan(current, problem.x, plan)
        for gid, idx in drop.items():
            kept[gid] = np.delete(kept[gid], idx)
        state, current_ms = new_state, new_ms
    removed = {g.id: np.setdiff1d(np.arange(g.channels), kept[g.id]).tolist()
               for g in problem.prunable if state[g.id]}  # fmt: skip
    return problem.finish(state, log, start, removed=removed, model=current)


__all__ = ["HALP_ROUNDS", "HALP_STEPS", "halp"]
