"""``ttmpd-gradual``: the ``ttmpd`` search in rounds, with distillation steps between them.

Schedule: ``GRADUAL_ROUNDS`` rounds ``r = 1 … R`` towards the latency target
``T_r = base − (base − budget · base) · r / R`` (ms, predicted). Each round after the first
fine-tunes the current (physically pruned) model for ``GRADUAL_STEPS`` steps of logit
distillation towards the unpruned model on the proxy images
(:func:`~ttmpd.pruning._finetune.short_finetune`). Then the ``ttmpd`` search
(:func:`~ttmpd.pruning._mck_search.mck_search`) prunes the current model to ``T_r``; its
proxies compare candidates with the current model. Removed channels stay removed.

A one-shot search ranks candidates by how they score *before* fine-tuning. At tight budgets
every candidate may score near chance, and the proxies cannot tell a structure that
fine-tuning recovers from one it does not. Fine-tuning between rounds keeps the scored
candidates close to a working model, as HALP's schedule does. The fine-tuning steps are part
of the method's prune time.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from ._finetune import short_finetune
from ._mck_search import mck_search
from ._problem import PruneResult, SearchProblem

GRADUAL_ROUNDS = 3
GRADUAL_STEPS = 10


def ttmpd_gradual(problem: SearchProblem, start: float) -> PruneResult:
    cfg = problem.config
    predictor = problem.savings.predictor
    target = cfg.budget * problem.base_ms
    kept = {g.id: np.arange(g.channels) for g in problem.prunable}
    current = copy.deepcopy(problem.model).eval()
    current_ms, log = problem.base_ms, []
    for r in range(1, GRADUAL_ROUNDS + 1):
        round_ms = problem.base_ms - (problem.base_ms - target) * r / GRADUAL_ROUNDS
        if current_ms <= round_ms:  # an earlier round already got below this target
            continue
        if r > 1:
            short_finetune(current, problem.images, problem.teacher, GRADUAL_STEPS,
                           seed=cfg.seed + r)  # fmt: skip
        inner = dataclasses.replace(cfg, method="ttmpd", budget=round_ms / current_ms,
                                    progress=False)  # fmt: skip
        sub = SearchProblem(current, problem.x, predictor, problem.images, inner)
        state, sub_log = mck_search(sub)
        result = sub.finish(state, sub_log, start)
        for gid in kept:
            removed = list(result.plan.removed(gid)) if gid in result.plan.keep else []
            kept[gid] = np.delete(kept[gid], removed)
        current, current_ms = result.model, result.predicted_latency_ms
        log += [{**row, "round": r} for row in sub_log]
        log.append({"round": r, "phase": "round", "target_ms": round_ms,
                    "predicted_latency_ms": current_ms, "accepted": True,
                    "finetune_steps": GRADUAL_STEPS if r > 1 else 0})  # fmt: skip
    state = {g.id: g.channels - len(kept[g.id]) for g in problem.prunable}
    removed = {g.id: np.setdiff1d(np.arange(g.channels), kept[g.id]).tolist()
               for g in problem.prunable if state[g.id]}  # fmt: skip
    return problem.finish(state, log, start, removed=removed, model=current)


__all__ = ["GRADUAL_ROUNDS", "GRADUAL_STEPS", "ttmpd_gradual"]
