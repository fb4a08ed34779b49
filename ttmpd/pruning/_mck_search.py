"""``ttmpd``: score every staircase step once, solve a multiple-choice knapsack, refine.

1. **Score.** For each prunable group ``g`` and each step ``k`` of its latency staircase
   (:meth:`SearchProblem.next_k` from 0), the single-group candidate ``{g: k}`` is evaluated
   once: V1/V2 after adaptive BN on the first ``proxy_images`` of the proxy images
   (:class:`~ttmpd.pruning._batched.BatchedCandidates`, several candidates per forward) and
   the :class:`~ttmpd.pruning.AccuracyModel` prediction ``acc_g(k)``. Its value is
   ``log acc_g(k) − log acc(∅)`` (≤ 0 for a harmful step) and its saving
   ``latency(∅) − latency({g: k})``, priced by the predictor in one batched call.
2. **Solve.** One step per group, maximising the summed value (the AccuracyModel is a
   product, so log-drops add) subject to the summed saving reaching
   ``latency(∅) − budget · latency(∅)``: the exact Pareto front of that multiple-choice
   knapsack (:mod:`ttmpd.pruning._mckp`). Savings of coupled groups are not additive, so
   every front point is priced exactly by the predictor (one batched call) and the most
   valuable one whose whole-model prediction meets the budget is kept; then single steps
   are undone while the prediction still meets the budget (:func:`tighten`).
   **Relinearize** (``relinearize_rounds`` times at most): savings measured from the
   unpruned model overstate what a group saves once a coupled group (an embedding width, a
   residual stream) is pruned too, so a state the exact pricing admits can be missing from
   the additive front. Each round prices every single-group change of the incumbent ``s*``,
   ``saving_g(k) = latency(s*) − latency(s* with g at step k)`` (negative for an undo), and
   solves and tightens again on those savings; the new state replaces ``s*`` only if its
   summed value is higher. Predictor calls only.
3. **Refine.** The combined state is evaluated, then up to ``refine_rounds`` rounds
   evaluate ``refine_candidates`` neighbours that also meet the budget: the next most
   valuable front points, and swaps that undo one step of a group and take one more step
   of another. A neighbour replaces the incumbent only if its evaluated predicted accuracy
   is higher, so refining never makes the objective worse.

One log row per evaluated state (``phase`` score, solve or refine; ``forwards``: forward
passes so far). Its cost is ``Σ_g (steps of g) + 1`` single evaluations plus ``refine_rounds ·
refine_candidates + 1``, each a forward of ``proxy_images`` images, where the greedy search
(``ttmpd-greedy``) re-scores candidates after every accepted step. A state is evaluated
once per problem: a search at another budget of the same problem
(:class:`~ttmpd.pruning.BudgetSearch`) logs the remembered scores and forwards only the
states it has not seen (its ``forwards`` continue the first search's count).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._batched import BatchedCandidates, supported
from ._bn import adaptive_bn_logits
from ._mask import ChannelMasker
from ._mckp import best_feasible, pareto_choices
from ._problem import NO_CANDIDATE, SearchProblem
from ._proxies import agreement, kd_gap

State = dict[str, int]


class _Proxies:
    """V1/V2 of states after adaptive BN on the proxy images, batched and remembered: a
    state (keyed by its nonzero removals) is forwarded once per problem, whatever the
    budget of the search that asks (:meth:`SearchProblem.with_budget` shares this)."""

    def __init__(self, problem: SearchProblem) -> None:
        n = problem.config.proxy_images or len(problem.images)
        self.problem = problem
        self.images = problem.images[:n]
        self.teacher = problem.teacher[:n]
        self.batched = BatchedCandidates(
            problem.model, problem.groups, self.images, problem.config.max_samples
        )
        #: groups with members the batched hooks cannot mask: one candidate at a time
        self.masker = None
        if not supported(problem.model, problem.groups):
            self.masker = ChannelMasker(problem.model, problem.groups)
        self.seen: dict[tuple, tuple[float, float]] = {}

    @staticmethod
    def key(state: State) -> tuple:
        return tuple(sorted((g, k) for g, k in state.items() if k))

    def __call__(self, states: list[State]) -> list[tuple[float, float]]:
        new = list({self.key(s): s for s in states if self.key(s) not in self.seen}.items())
        if new:
            removed = [self.problem.removed(s) for _, s in new]
            if self.masker is None:
                logits = self.batched.logits(removed)
            else:
                self.batched.forwards += len(removed)
                logits = [adaptive_bn_logits(self.masker.masked(r), self.images)
                          for r in removed]  # fmt: skip
            for (key, _), out in zip(new, logits, strict=True):
                self.seen[key] = (agreement(out, self.teacher), kd_gap(out, self.teacher))
        return [self.seen[self.key(s)] for s in states]


class _Evaluator:
    """Predicted accuracy of states (:class:`_Proxies`, shared by every budget of the
    problem); logs every evaluation of this search."""

    def __init__(self, problem: SearchProblem) -> None:
        self.problem = problem
        if "proxies" not in problem.shared:
            problem.shared["proxies"] = _Proxies(problem)
        self.proxies: _Proxies = problem.shared["proxies"]
        self.log: list[dict] = []

    def __call__(self, states: list[State], phase: str) -> np.ndarray:
        proxies = self.proxies(states)
        latencies = self.problem.latency(states)
        accs = []
        for state, (v1, v2), ms in zip(states, proxies, latencies, strict=True):
            kept = self.problem.kept(state)
            acc = float(self.problem.config.accuracy_model.predict(v1, v2, kept))
            accs.append(acc)
            self.log.append({"phase": phase, "state": dict(state), "v1": v1, "v2": v2,
                             "kept": kept, "proxy_score": acc, "accepted": False,
                             "predicted_latency_ms": float(ms),
                             "forwards": self.proxies.batched.forwards})  # fmt: skip
        return np.array(accs)


def staircase(problem: SearchProblem, group) -> list[int]:
    """Removal counts ``[0, k1, k2, …]`` down ``group``'s latency staircase."""
    steps, k = [0], problem.next_k(group, 0)
    while k is not None:
        steps.append(k)
        k = problem.next_k(group, k)
    return steps


def _neighbours(
    problem: SearchProblem,
    steps: list[list[int]],
    value: list[np.ndarray],
    incumbent: np.ndarray,
    front: np.ndarray,
    front_value: np.ndarray,
    fits: np.ndarray,
    seen: set[tuple[int, ...]],
    count: int,
) -> list[np.ndarray]:
    """Up to ``count`` unseen choices near ``incumbent`` that meet the budget, most
    valuable (summed single-group values) first: other feasible front points and
    one-step-back / one-step-forward swaps between two groups."""
    swaps = []
    for g, i in enumerate(incumbent):
        if i == 0:
            continue
        for h, j in enumerate(incumbent):
            if h != g and j + 1 < len(steps[h]):
                choice = incumbent.copy()
                choice[g], choice[h] = i - 1, j + 1
                swaps.append(choice)
    pool = [c for c in [*front[fits], *swaps] if tuple(c) not in seen]
    if not pool:
        return []
    pool_arr = np.array(pool)
    ok = _fits(problem, steps, pool_arr)
    pool_arr = pool_arr[ok]
    totals = np.array([_value(value, c) for c in pool_arr])
    order = np.argsort(-totals, kind="stable")
    unique: dict[tuple[int, ...], np.ndarray] = {}
    for idx in order:
        unique.setdefault(tuple(pool_arr[idx]), pool_arr[idx])
        if len(unique) == count:
            break
    return list(unique.values())


def _state(problem: SearchProblem, steps: list[list[int]], choice) -> State:
    pairs = enumerate(zip(problem.prunable, choice, strict=True))
    return {g.id: steps[n][int(i)] for n, (g, i) in pairs}


def _fits(problem: SearchProblem, steps: list[list[int]], choices: np.ndarray) -> np.ndarray:
    target = problem.config.budget * problem.base_ms
    latencies = problem.latency([_state(problem, steps, c) for c in choices])
    return np.asarray(latencies) <= target


def tighten(
    problem: SearchProblem, steps: list[list[int]], value: list[np.ndarray], choice: np.ndarray
) -> np.ndarray:
    """Undo single steps of ``choice`` while the whole-model prediction still meets the
    budget, each time the feasible undo that raises the summed value most. A front point is
    chosen on additive savings; coupled groups save less together than apart, so the first
    front point the exact pricing admits can lie well under the target. Undoing steps spends
    that slack on keeping channels. Costs predictor calls only (no forward pass)."""
    choice = np.array(choice)
    while True:
        undos = [choice - (np.arange(len(choice)) == g) for g in np.flatnonzero(choice > 0)]
        if not undos:
            return choice
        undos_arr = np.array(undos)
        ok = _fits(problem, steps, undos_arr)
        if not ok.any():
            return choice
        gain = [_value(value, c) for c in undos_arr]
        choice = undos_arr[int(np.argmax(np.where(ok, gain, -np.inf)))]


def _value(value: list[np.ndarray], choice: np.ndarray) -> float:
    return float(sum(value[g][i] for g, i in enumerate(choice)))


def _solve(
    problem: SearchProblem, steps: list[list[int]], saving: list[np.ndarray],
    value: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:  # fmt: skip
    """``(front, front_value, fits, choice)``: the additive front of ``saving``/``value``,
    which of its points the exact pricing admits, and the most valuable of them tightened
    (None when none fits)."""
    front, _, front_value = pareto_choices(saving, value)
    fits = _fits(problem, steps, front)
    best = best_feasible(front, front_value, lambda _: fits)
    choice = None if best is None else tighten(problem, steps, value, front[best])
    return front, front_value, fits, choice


def relinearize(
    problem: SearchProblem,
    steps: list[list[int]],
    value: list[np.ndarray],
    solved: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    rounds: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Solve again with each group's savings priced around the incumbent ``s*``:
    ``saving_g(k) = latency(s*) − latency(s* with g at step k)``, one batched predictor
    call per round; keeps a round's ``(front, front_value, fits, choice)`` only if its
    choice is worth more (summed single-group values) than the incumbent, and stops at the
    first round that is not."""
    for _ in range(rounds):
        incumbent = solved[3]
        changed = []
        for g, ks in enumerate(steps):
            for i in range(len(ks)):
                choice = incumbent.copy()
                choice[g] = i
                changed.append(choice)
        latencies = problem.latency([_state(problem, steps, c) for c in changed])
        saving, at = [], 0
        for g, ks in enumerate(steps):  # each group's own row holds latency(s*) too
            row = latencies[at : at + len(ks)]
            saving.append(row[incumbent[g]] - row)
            at += len(ks)
        again = _solve(problem, steps, saving, value)
        if again[3] is None or not _value(value, again[3]) > _value(value, incumbent) + 1e-12:
            break
        solved = again
    return solved


def refine(
    evaluate,
    candidates,
    incumbent: np.ndarray,
    incumbent_acc: float,
    rounds: int,
) -> tuple[np.ndarray, float]:
    """Hill-climb: each round evaluates ``candidates(incumbent, seen)`` in one call and
    moves to the best one if it beats the incumbent strictly; stops when none does.
    ``evaluate(list of choices) -> accuracies``; the incumbent's accuracy never falls."""
    seen = {tuple(incumbent)}
    for _ in range(rounds):
        pool = candidates(incumbent, seen)
        if not pool:
            break
        seen |= {tuple(c) for c in pool}
        accs = evaluate(pool)
        best = int(np.argmax(accs))
        if not accs[best] > incumbent_acc:
            break
        incumbent, incumbent_acc = pool[best], float(accs[best])
    return incumbent, incumbent_acc


def mck_search(problem: SearchProblem) -> tuple[State, list[dict]]:
    cfg = problem.config
    evaluate = _Evaluator(problem)
    steps = [staircase(problem, g) for g in problem.prunable]
    if all(len(s) == 1 for s in steps):
        raise InputError(NO_CANDIDATE)
    singles = [{g.id: k} for g, ks in zip(problem.prunable, steps, strict=True) for k in ks[1:]]
    accs = evaluate([{}, *singles], "score")
    base_log = float(np.log(max(accs[0], 1e-12)))
    single_ms = np.array([row["predicted_latency_ms"] for row in evaluate.log[1:]])
    log_gain = np.log(np.maximum(accs[1:], 1e-12)) - base_log
    value, saving, at = [], [], 0
    for ks in steps:
        n = len(ks) - 1
        value.append(np.concatenate([[0.0], log_gain[at : at + n]]))
        saving.append(np.concatenate([[0.0], problem.base_ms - single_ms[at : at + n]]))
        at += n
    solved = _solve(problem, steps, saving, value)
    if solved[3] is None:
        raise InputError(NO_CANDIDATE)
    front, front_value, fits, incumbent = relinearize(problem, steps, value, solved,
                                                      cfg.relinearize_rounds)  # fmt: skip
    incumbent_acc = float(evaluate([_state(problem, steps, incumbent)], "solve")[0])

    def candidates(choice, seen):
        return _neighbours(problem, steps, value, choice, front, front_value, fits, seen,
                           cfg.refine_candidates)  # fmt: skip

    def evaluate_choices(choices):
        return evaluate([_state(problem, steps, c) for c in choices], "refine")

    incumbent, _ = refine(evaluate_choices, candidates, incumbent, incumbent_acc,
                          cfg.refine_rounds)  # fmt: skip
    state = _state(problem, steps, incumbent)
    for row in evaluate.log:
        row["accepted"] = row["state"] == state and row["phase"] != "score"
        row["state"] = ",".join(f"{g}={k}" for g, k in row["state"].items() if k)
    return state, evaluate.log
