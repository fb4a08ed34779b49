"""Pruning baselines from the literature, run on the same problem as ttmpd's search.

All use the same latency predictor, the same budget (a fraction of the unpruned model's
predicted latency) and the same unlabeled proxy images; none sees a label. Accuracy
without labels is agreement with the unpruned model's pseudo labels.

``eagleeye`` (Li et al., 2020)
    Draws ``EAGLEEYE_CANDIDATES`` random layer-wise pruning ratios: a random direction
    ``u_g ~ U(0, 1)`` per group, scaled by the smallest ``s`` whose ratios
    ``min(s·u_g, 1)·max_group_ratio`` meet the budget (bisection on predicted latency), so
    every candidate sits at the budget. Each candidate is evaluated after adaptive BN
    (statistics re-estimated on the proxy images); the best is returned.
``netadapt`` (Yang et al., 2018)
    Iterative: each iteration asks for a predicted latency reduction of
    ``(base - target) / NETADAPT_ITERATIONS`` (halved, as often as needed, when no group can
    deliver it any more). For every group it takes the smallest removal
    on the group's latency staircase that achieves it (channels chosen by importance on the
    *current* weights), short-term fine-tunes that candidate for ``NETADAPT_STEPS``
    distillation steps (:func:`~ttmpd.pruning._finetune.short_finetune`) and keeps the most
    accurate one, weights included. Slow by design: it is the method that fine-tunes
    candidates to judge them.
``tp-magnitude`` (Torch-Pruning's magnitude pruner, library defaults)
    One ratio for every group, channels ranked by torch-pruning's default
    ``GroupMagnitudeImportance()`` (L2, ``p=2``, mean over the coupled group, mean
    normalisation); the smallest ratio meeting the budget (bisection). With
    ``SearchConfig.round_to`` the kept counts are rounded down to a multiple of it, as
    torch-pruning's ``MetaPruner(round_to=...)`` does (off by default, like the library).
``halp`` (Shen et al., 2022)
    Latency-saliency knapsack interleaved with fine-tuning; see :mod:`ttmpd.pruning._halp`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from ..errors import InputError
from ._apply import apply_plan, plan_from_removed
from ._bn import adapt_bn
from ._finetune import short_finetune
from ._groups import analyze, channel_groups
from ._halp import halp
from ._importance import importance as importance_fn
from ._mask import ChannelMasker
from ._problem import NO_CANDIDATE, PruneResult, SearchProblem
from ._proxies import agreement

EAGLEEYE_CANDIDATES = 24
NETADAPT_ITERATIONS = 6
NETADAPT_STEPS = 20

Baseline = Callable[[SearchProblem, float], PruneResult]


def _smallest_feasible(
    problem: SearchProblem, state_at: Callable[[float], dict[str, int]], hi: float
) -> float:
    """Smallest ``s`` in ``[0, hi]`` whose state meets the budget, to ``hi / 32²``.

    Latency falls monotonically in ``s``; two rounds of 33 states priced in one call each.
    """
    target = problem.config.budget * problem.base_ms
    lo = 0.0
    for _ in range(2):
        grid = np.linspace(lo, hi, 33)
        ok = problem.latency([state_at(float(v)) for v in grid]) <= target
        if not ok.any():
            return hi
        first = int(np.argmax(ok))
        lo, hi = (grid[max(first - 1, 0)], grid[first])
    return float(hi)


def eagleeye(problem: SearchProblem, start: float) -> PruneResult:
    rng = np.random.default_rng(problem.config.seed)
    masker = ChannelMasker(problem.model, problem.groups)
    ratio = problem.config.max_group_ratio
    channels = np.array([g.channels for g in problem.prunable])
    caps = np.array([problem.max_k[g.id] for g in problem.prunable])
    log, states = [], []
    for i in range(EAGLEEYE_CANDIDATES):
        u = rng.uniform(0.05, 1.0, size=len(channels))

        def state_at(s: float, u=u) -> dict[str, int]:
            k = np.minimum(np.round(np.minimum(s * u, 1.0) * ratio * channels), caps)
            return {g.id: int(n) for g, n in zip(problem.prunable, k, strict=True)}

        s = _smallest_feasible(problem, state_at, 1.0 / u.min())
        state = state_at(s)
        states.append(state)
        v1, v2 = problem.proxies(masker, state)
        log.append({"candidate": i, "scale": s, "removed": sum(state.values()),
                    "predicted_latency_ms": float(problem.latency([state])[0]),
                    "v1": v1, "v2": v2, "accepted": False})  # fmt: skip
    best = int(np.argmax([row["v1"] for row in log]))
    log[best]["accepted"] = True
    return problem.finish(states[best], log, start)


def _staircase_k(problem: SearchProblem, state: dict[str, int], gid: str, goal_ms: float):
    """Smallest removal count of ``gid`` on its staircase with predicted latency <= goal."""
    group = next(g for g in problem.prunable if g.id == gid)
    k = state[gid]
    while (k := problem.next_k(group, k)) is not None:
        lat = float(problem.latency([{**state, gid: k}])[0])
        if lat <= goal_ms:
            return k, lat
    return None


def netadapt(problem: SearchProblem, start: float) -> PruneResult:
    cfg = problem.config
    target = cfg.budget * problem.base_ms
    step_ms = (problem.base_ms - target) / NETADAPT_ITERATIONS
    state = {g.id: 0 for g in problem.prunable}
    kept = {g.id: np.arange(g.channels) for g in problem.prunable}
    current, current_ms = copy.deepcopy(problem.model).eval(), problem.base_ms
    score = importance_fn("l1" if cfg.importance == "taylor" else cfg.importance)
    log, iteration = [], 0
    while current_ms > target:
        options: dict = {}
        while not options:  # halve the asked reduction until some group can deliver it
            if step_ms < 1e-6 * problem.base_ms:
                raise InputError(NO_CANDIDATE)
            goal = max(target, current_ms - step_ms)
            options = {g.id: _staircase_k(problem, state, g.id, goal) for g in problem.prunable}
            options = {gid: o for gid, o in options.items() if o is not None}
            if not options:
                step_ms /= 2
        found = channel_groups(current, problem.x, options=problem.config.groups)
        groups = {g.id: g for g in found}
        rows, models = [], []
        for gid, (k, lat) in options.items():
            if gid not in groups:
                continue
            drop = np.argsort(score(current, groups[gid], seed=cfg.seed), kind="stable")
            drop = np.sort(drop[: k - state[gid]])
            plan = plan_from_removed(list(groups.values()), {gid: drop.tolist()})
            candidate = adapt_bn(apply_plan(current, problem.x, plan), problem.images)
            short_finetune(candidate, problem.images, problem.teacher, NETADAPT_STEPS,
                           seed=cfg.seed + iteration)  # fmt: skip
            with torch.no_grad():
                acc = agreement(candidate(problem.images), problem.teacher)
            rows.append({"iteration": iteration, "group": gid, "k_from": state[gid], "k_to": k,
                         "predicted_latency_ms": lat, "short_ft_agreement": acc,
                         "accepted": False})  # fmt: skip
            models.append((candidate, drop))
        if not rows:
            raise InputError(NO_CANDIDATE)
        best = int(np.argmax([r["short_ft_agreement"] for r in rows]))
        rows[best]["accepted"] = True
        log += rows
        gid, (current, drop) = rows[best]["group"], models[best]
        kept[gid] = np.delete(kept[gid], drop)
        state[gid], current_ms = rows[best]["k_to"], rows[best]["predicted_latency_ms"]
        iteration += 1
    channels = {g.id: g.channels for g in problem.prunable}
    removed = {gid: np.setdiff1d(np.arange(channels[gid]), kept[gid]).tolist()
               for gid in state if state[gid]}  # fmt: skip
    return problem.finish(state, log, start, removed=removed, model=current)


def _tp_magnitude_scores(problem: SearchProblem) -> dict[str, np.ndarray]:
    import torch_pruning as tp

    analysis = analyze(problem.model, problem.x, verify=False, options=problem.config.groups)
    scorer = tp.importance.GroupMagnitudeImportance()
    scores = {}
    with torch.no_grad():
        for g in problem.prunable:
            group = analysis.pruning_group(g.id, list(range(g.channels)))
            per_root = np.asarray(scorer(group).detach().cpu(), dtype=float)
            # a unit (head, conv-group offset) scores the mean of its root channels
            roots = [analysis.root_indices(g.id, [u]) for u in range(g.channels)]
            scores[g.id] = np.array([per_root[r].mean() for r in roots])
    return scores


def tp_magnitude(problem: SearchProblem, start: float) -> PruneResult:
    order = {gid: np.argsort(s, kind="stable") for gid, s in _tp_magnitude_scores(problem).items()}
    target = problem.config.budget * problem.base_ms
    step = problem.config.round_to or 1

    def state_at(ratio: float) -> dict[str, int]:
        state = {}
        for g in problem.prunable:
            kept = g.channels - int(g.channels * ratio)
            kept = max(kept - kept % step, min(step, g.channels))
            state[g.id] = min(g.channels - kept, problem.max_k[g.id])
        return state

    ratio = _smallest_feasible(problem, state_at, problem.config.max_group_ratio)
    state = state_at(ratio)
    latency = float(problem.latency([state])[0])
    if latency > target:
        raise InputError(
            f"tp-magnitude keeps multiples of {step} channels and reaches only "
            f"{latency / problem.base_ms:.2f} of the original latency; raise the budget"
        )
    log = [{"ratio": ratio, "round_to": step, "predicted_latency_ms": latency,
            "accepted": True}]  # fmt: skip
    removed = {gid: np.sort(order[gid][:k]).tolist() for gid, k in state.items() if k}
    return problem.finish(state, log, start, removed=removed)


BASELINES: dict[str, Baseline] = {
    "halp": halp,
    "eagleeye": eagleeye,
    "netadapt": netadapt,
    "tp-magnitude": tp_magnitude,
}
