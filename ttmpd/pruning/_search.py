"""Latency-aware test-time pruning search (TT-MPD) and the baselines beside it.

Every method works on a :class:`~ttmpd.pruning._problem.SearchProblem`: a pruning *state*
says how many channels each prunable group has lost, latency comes only from the predictor,
nothing is measured inside the loop. The budget is a fraction of the unpruned model's
predicted latency.

``ttmpd``
    Every staircase step of every group scored once, a multiple-choice knapsack of predicted
    accuracy against predicted latency, a few re-evaluations near its solution; see
    :mod:`ttmpd.pruning._mck_search`.
``ttmpd-greedy``
    Each step proposes, for every group, the next step down its latency staircase: the
    smallest further removal of at least ``min_step`` of the group's channels at which the
    group's predicted latency actually drops (CPU kernels often only get faster at
    multiples of 8 channels). If that step does not lower the *whole-model* prediction
    (coupled groups already pruned shift a group's staircase), the candidate walks further
    down the staircase to the first step that does. A candidate is scored by the
    predicted accuracy loss per predicted millisecond saved, where accuracy is the
    :class:`~ttmpd.pruning.AccuracyModel` of the label-free proxies V1/V2 of the masked
    candidate after adaptive BN and of the importance share it keeps
    (:mod:`ttmpd.pruning._proxies`). The best candidate is accepted. The accepted group's
    next candidate is re-evaluated every step; the others' accuracy deltas are reused and
    refreshed every ``refresh_every`` steps.
``ttmpd-gradual``
    ``ttmpd`` in rounds towards the budget, with a few distillation steps on the proxy images
    between them (:mod:`ttmpd.pruning._gradual`).
``knapsack``
    No accuracy proxy: channel blocks (staircase steps) are removed greedily by importance
    (``importance``) lost per ms saved, with importance normalised by each group's mean,
    until the budget holds — a greedy solution of the importance/latency knapsack.
``uniform``
    The same keep ratio for every group, the smallest that meets the budget (bisection).
``halp``, ``eagleeye``, ``netadapt``, ``tp-magnitude``
    Baselines from the literature, see :mod:`ttmpd.pruning._baselines`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..lut import LatencyPredictor
from ._baselines import BASELINES
from ._gradual import ttmpd_gradual
from ._mask import ChannelMasker
from ._mck_search import mck_search
from ._problem import NO_CANDIDATE, PruneResult, SearchConfig, SearchProblem, progress_bar


def first_lowering_step(
    problem: SearchProblem, state: dict[str, int], group, k: int | None, current_ms: float
) -> int | None:
    """The first removal count from ``k`` on down ``group``'s staircase (``problem.next_k``)
    at which the predicted whole-model latency drops below ``current_ms``, or None."""
    while k is not None:
        if float(problem.latency([{**state, group.id: k}])[0]) < current_ms:
            return k
        k = problem.next_k(group, k)
    return None


def _greedy(problem: SearchProblem) -> tuple[dict[str, int], list[dict]]:
    cfg = problem.config
    masker = ChannelMasker(problem.model, problem.groups)
    state = {g.id: 0 for g in problem.prunable}
    target = cfg.budget * problem.base_ms
    current_ms = problem.base_ms
    current_score = problem.proxy_score(masker, state)["proxy_score"]
    deltas: dict[tuple[str, int], tuple[float, dict]] = {}
    log, step = [], 0
    bar = progress_bar(problem, target)
    try:
        while current_ms > target:
            candidates = [(g, problem.next_k(g, state[g.id])) for g in problem.prunable]
            candidates = [(g, first_lowering_step(problem, state, g, k, current_ms))
                          for g, k in candidates if k is not None]  # fmt: skip
            candidates = [(g, k) for g, k in candidates if k is not None]
            if not candidates:
                raise InputError(
                    "no candidate lowers the predicted latency further; raise the budget"
                )
            states = [{**state, g.id: k} for g, k in candidates]
            latencies = problem.latency(states)
            fresh_all = step % cfg.refresh_every == 0
            rows = []
            for (g, k), cand_state, lat in zip(candidates, states, latencies, strict=True):
                key = (g.id, k)
                fresh = fresh_all or key not in deltas
                if fresh:
                    signals = problem.proxy_score(masker, cand_state)
                    deltas[key] = (current_score - signals["proxy_score"], signals)
                loss, signals = deltas[key]
                saving = current_ms - float(lat)
                score = (max(loss, 0.0) + 1e-6) / saving if saving > 0 else np.inf
                rows.append({"step": step, "group": g.id, "k_from": state[g.id], "k_to": k,
                             "channels_left": g.channels - k, "predicted_saving_ms": saving,
                             "predicted_latency_ms": float(lat), "v1": signals["v1"],
                             "v2": signals["v2"], "kept": signals["kept"],
                             "proxy_score": current_score - loss, "loss_per_ms": score,
                             "fresh": fresh, "accepted": False})  # fmt: skip
            best = int(np.argmin([r["loss_per_ms"] for r in rows]))
            if not np.isfinite(rows[best]["loss_per_ms"]):
                raise InputError(
                    "no candidate lowers the predicted latency further; raise the budget"
                )
            rows[best]["accepted"] = True
            log += rows
            chosen = rows[best]
            state[chosen["group"]] = chosen["k_to"]
            bar.update(round(current_ms - chosen["predicted_latency_ms"], 4))
            current_ms, current_score = chosen["predicted_latency_ms"], chosen["proxy_score"]
            deltas = {k: v for k, v in deltas.items() if k[0] != chosen["group"]}
            step += 1
    finally:
        bar.close()
    return state, log


def _knapsack(problem: SearchProblem) -> tuple[dict[str, int], list[dict]]:
    scores = {g: np.sort(raw / (raw.mean() + 1e-12)) for g, raw in problem.scores.items()}
    state = {g.id: 0 for g in problem.prunable}
    target = problem.config.budget * problem.base_ms
    current_ms, log, step = problem.base_ms, [], 0
    while current_ms > target:
        candidates = [(g, problem.next_k(g, state[g.id])) for g in problem.prunable]
        candidates = [(g, k) for g, k in candidates if k is not None]
        if not candidates:
            raise InputError(NO_CANDIDATE)
        latencies = problem.latency([{**state, g.id: k} for g, k in candidates])
        rows = []
        for (g, k), lat in zip(candidates, latencies, strict=True):
            value = float(scores[g.id][state[g.id] : k].sum())
            saving = current_ms - float(lat)
            rows.append({"step": step, "group": g.id, "k_from": state[g.id], "k_to": k,
                         "channels_left": g.channels - k, "predicted_saving_ms": saving,
                         "predicted_latency_ms": float(lat), "importance_lost": value,
                         "loss_per_ms": value / saving if saving > 0 else np.inf,
                         "accepted": False})  # fmt: skip
        best = int(np.argmin([r["loss_per_ms"] for r in rows]))
        rows[best]["accepted"] = True
        log += rows
        state[rows[best]["group"]] = rows[best]["k_to"]
        current_ms = rows[best]["predicted_latency_ms"]
        step += 1
    return state, log


def _uniform(problem: SearchProblem) -> tuple[dict[str, int], list[dict]]:
    def state_at(ratio: float) -> dict[str, int]:
        return {g.id: min(round(ratio * g.channels), problem.max_k[g.id])
                for g in problem.prunable}  # fmt: skip

    lo, hi, log = 0.0, problem.config.max_group_ratio, []
    target = problem.config.budget * problem.base_ms
    for step in range(30):
        mid = (lo + hi) / 2
        lat = float(problem.latency([state_at(mid)])[0])
        log.append({"step": step, "ratio": mid, "predicted_latency_ms": lat,
                    "accepted": lat <= target})  # fmt: skip
        lo, hi = (lo, mid) if lat <= target else (mid, hi)
    if not float(problem.latency([state_at(hi)])[0]) <= target:
        raise InputError(NO_CANDIDATE)
    return state_at(hi), log


_METHODS: dict[str, Callable[[SearchProblem], tuple[dict[str, int], list[dict]]]] = {
    "ttmpd": mck_search,
    "ttmpd-greedy": _greedy,
    "knapsack": _knapsack,
    "uniform": _uniform,
}


def prune(
    model: nn.Module,
    example_input: torch.Tensor,
    predictor: LatencyPredictor,
    images: torch.Tensor,
    config: SearchConfig,
) -> PruneResult:
    """Prune ``model`` to ``config.budget`` of its predicted latency.

    ``example_input`` is one batch shaped like deployment (e.g. ``(1, C, H, W)``; it fixes
    the latency units); ``images`` are unlabeled test samples ``(N, C, H, W)``,
    already normalised, used for pseudo labels, adaptive BN and the proxies.
    """
    return BudgetSearch(model, example_input, predictor, images, config)(config.budget)


class BudgetSearch:
    """:func:`prune` at one budget after another on the same model, images and predictor.

    ``search(budget) -> PruneResult`` (``budget``: fraction of the predicted original).
    The first call builds the :class:`~ttmpd.pruning._problem.SearchProblem` (groups,
    pricing, importance, teacher outputs); later calls reuse it
    (:meth:`~ttmpd.pruning._problem.SearchProblem.with_budget`) and, for ``ttmpd``, every
    state already evaluated: the staircase scores do not depend on the budget, so a second
    search costs the solve, the refine and the states it has not seen. Each result's
    ``search_s`` counts only its own call. Meant for re-searches after a measured budget
    check (:func:`~ttmpd.pruning.checked_prune`)."""

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        predictor: LatencyPredictor,
        images: torch.Tensor,
        config: SearchConfig,
    ) -> None:
        self._args = (model, example_input, predictor, images, config)
        self._problem: SearchProblem | None = None

    def __call__(self, budget: float) -> PruneResult:
        start = time.perf_counter()
        model, example_input, predictor, images, config = self._args
        if self._problem is None:
            config = replace(config, budget=budget)
            self._problem = SearchProblem(model, example_input, predictor, images, config)
        problem = self._problem.with_budget(budget)
        problem.check_reachable()
        method = problem.config.method
        if method in BASELINES:
            return BASELINES[method](problem, start)
        if method == "ttmpd-gradual":
            return ttmpd_gradual(problem, start)
        state, log = _METHODS[method](problem)
        return problem.finish(state, log, start)
