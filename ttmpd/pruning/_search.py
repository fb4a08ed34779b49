"""Latency-aware test-time pruning search (TT-MPD) and the two baselines beside it.

All three methods share one pruning *state*: how many channels each prunable group has
lost, always the least important ones (a per-group ranking by ``importance``, computed
once). Latency comes only from the predictor (:meth:`ttmpd.lut.PruneSavings.latencies`,
exact for the whole state); nothing is measured inside the loop. The budget is a fraction
of the unpruned model's predicted latency.

``ttmpd`` (greedy)
    Each step proposes, for every group, the next step down its latency staircase: the
    smallest further removal of at least ``min_step`` of the group's channels at which the
    group's predicted latency actually drops (CPU kernels often only get faster at
    multiples of 8 channels). A candidate is scored by the
    predicted accuracy loss per predicted millisecond saved, where accuracy comes from the
    label-free proxies V1/V2 (:mod:`ttmpd.pruning._proxies`) of the masked candidate after
    adaptive BN. The best candidate is accepted. The accepted group's next candidate is
    re-evaluated every step; the others' accuracy deltas are reused and refreshed every
    ``refresh_every`` steps.
``knapsack`` (HALP-style)
    No accuracy proxy: channel blocks (staircase steps) are removed greedily by importance
    lost per ms saved, with importance normalised by each group's mean, until the budget
    holds — a greedy solution of the importance/latency knapsack.
``uniform``
    The same keep ratio for every group, the smallest that meets the budget (bisection).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import InputError
from ..lut import LatencyPredictor, PruneSavings
from ._apply import apply_plan, plan_from_removed
from ._bn import recalibrate_bn
from ._groups import ChannelGroup, channel_groups
from ._importance import importance as importance_fn
from ._mask import ChannelMasker
from ._plan import PrunePlan
from ._proxies import AccuracyModel, agreement_proxies

logger = logging.getLogger(__name__)
METHODS = ("ttmpd", "knapsack", "uniform")
_NO_CANDIDATE = "no candidate lowers the predicted latency further; raise the budget"


@dataclass(frozen=True)
class SearchConfig:
    """Settings of :func:`prune`. ``budget``: target latency / unpruned latency, in (0, 1)."""

    budget: float
    method: str = "ttmpd"
    importance: str = "l1"
    max_group_ratio: float = 0.9
    min_step: float = 0.125
    refresh_every: int = 4
    accuracy_model: AccuracyModel = field(default_factory=AccuracyModel)
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.budget < 1:
            raise InputError(
                f"budget must be a fraction of the original latency in (0, 1), got "
                f"{self.budget}; e.g. 0.5 keeps half the latency"
            )
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 0 < self.max_group_ratio < 1:
            raise InputError(f"max_group_ratio must be in (0, 1), got {self.max_group_ratio}")


@dataclass(frozen=True)
class PruneResult:
    """The outcome of :func:`prune`: plan, pruned model (BN re-estimated), candidate log."""

    plan: PrunePlan
    model: nn.Module
    log: pd.DataFrame
    base_latency_ms: float
    predicted_latency_ms: float
    target_latency_ms: float
    method: str
    search_s: float


class _Problem:
    """Everything the three methods share."""

    def __init__(self, model, example_input, predictor, calib, config: SearchConfig) -> None:
        self.model, self.x, self.calib, self.config = model.eval(), example_input, calib, config
        self.groups = channel_groups(model, example_input)
        self.savings = PruneSavings(predictor, model, example_input)
        self.lut_id = _lut_group_ids(self.groups, self.savings)
        self.prunable = [g for g in self.groups if g.prunable and g.id in self.lut_id]
        if not self.prunable:
            raise InputError("the model has no prunable channel group the LUT can price")
        with torch.no_grad():
            self.teacher = model(calib)
        self.order = self._rank()
        self.base_ms = float(self.savings.latencies([{}])[0])
        self.max_k = {g.id: int(self.config.max_group_ratio * g.channels) for g in self.prunable}

    def _rank(self) -> dict[str, np.ndarray]:
        kwargs: dict = {"seed": self.config.seed}
        if self.config.importance == "taylor":
            target = self.teacher.argmax(1)

            def loss_fn(m: nn.Module) -> torch.Tensor:
                return F.cross_entropy(m(self.calib), target)

            kwargs["loss_fn"] = loss_fn
        score = importance_fn(self.config.importance)
        return {g.id: np.argsort(score(self.model, g, **kwargs), kind="stable")
                for g in self.prunable}  # fmt: skip

    def latency(self, states: list[dict[str, int]]) -> np.ndarray:
        mapped = [{self.lut_id[g]: k for g, k in s.items() if k} for s in states]
        return self.savings.latencies(mapped)

    def next_k(self, group: ChannelGroup, k: int) -> int | None:
        """The next removal count on the group's latency staircase, or None."""
        curve = self.savings._curve(self.lut_id[group.id])
        limit = min(self.max_k[group.id], group.channels - 1)
        first = k + max(1, int(np.ceil(self.config.min_step * group.channels)))
        if first > limit:
            return None
        window = curve[first : limit + 1]
        tol = 0.01 * (curve[k] - np.nanmin(curve)) + 1e-9
        drops = np.nonzero(window < curve[k] - tol)[0]
        return first + int(drops[0]) if drops.size else None

    def removed(self, state: dict[str, int]) -> dict[str, list[int]]:
        return {g: self.order[g][:k].tolist() for g, k in state.items() if k}

    def proxies(self, masker: ChannelMasker, state: dict[str, int]) -> tuple[float, float]:
        candidate = recalibrate_bn(masker.masked(self.removed(state)), self.calib)
        return agreement_proxies(candidate, self.calib, self.teacher)

    def finish(self, state: dict[str, int], log: list[dict], start: float) -> PruneResult:
        removed = self.removed(state)
        meta = {"method": self.config.method, "budget": self.config.budget}
        plan = plan_from_removed(self.groups, removed, model=self.model, metadata=meta)
        pruned = recalibrate_bn(apply_plan(self.model, self.x, plan), self.calib)
        return PruneResult(
            plan=plan,
            model=pruned,
            log=pd.DataFrame(log),
            base_latency_ms=self.base_ms,
            predicted_latency_ms=float(self.latency([state])[0]),
            target_latency_ms=self.config.budget * self.base_ms,
            method=self.config.method,
            search_s=time.perf_counter() - start,
        )

    def check_reachable(self) -> None:
        deepest = {g.id: self.max_k[g.id] for g in self.prunable}
        floor = float(self.latency([deepest])[0])
        if not np.isfinite(floor) or floor > self.config.budget * self.base_ms:
            raise InputError(
                f"budget {self.config.budget} is below what pruning can reach: at most "
                f"{self.config.max_group_ratio:.0%} of each group's channels gives "
                f"{floor / self.base_ms:.2f} of the original latency; raise the budget"
            )


def _lut_group_ids(groups: list[ChannelGroup], savings: PruneSavings) -> dict[str, str]:
    """Map pruning group ids to latency-group ids through a producing member's unit name."""
    by_unit: dict[tuple[str, str], str] = {}
    for lut_group in savings.groups.values():
        for i, dim, _ in lut_group.members:
            by_unit.setdefault((savings.extraction.units[i].name, dim), lut_group.id)
    mapping = {}
    for g in groups:
        for path, side in g.members:
            if side == "out" and (path, "out") in by_unit:
                mapping[g.id] = by_unit[(path, "out")]
                break
        else:
            if g.prunable:
                logger.warning("group %s has no priced unit; it is left unpruned", g.id)
    return mapping


def _progress(problem: _Problem, total: float):
    return tqdm(
        total=round(problem.base_ms - total, 4),
        desc=f"prune {problem.config.method}",
        unit="ms",
        disable=None if problem.config.progress else True,
        leave=False,
        bar_format="{desc}: {bar} {n:.3f}/{total:.3f} ms saved [{elapsed}<{remaining}]",
    )


def _greedy(problem: _Problem) -> tuple[dict[str, int], list[dict]]:
    cfg, acc_model = problem.config, problem.config.accuracy_model
    masker = ChannelMasker(problem.model, problem.groups)
    state = {g.id: 0 for g in problem.prunable}
    target = cfg.budget * problem.base_ms
    current_ms = problem.base_ms
    current_acc = float(acc_model.predict(*problem.proxies(masker, state)))
    deltas: dict[tuple[str, int], tuple[float, float, float]] = {}
    log, step = [], 0
    bar = _progress(problem, target)
    try:
        while current_ms > target:
            candidates = [(g, problem.next_k(g, state[g.id])) for g in problem.prunable]
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
                    v1, v2 = problem.proxies(masker, cand_state)
                    deltas[key] = (current_acc - float(acc_model.predict(v1, v2)), v1, v2)
                loss, v1, v2 = deltas[key]
                saving = current_ms - float(lat)
                score = (max(loss, 0.0) + 1e-6) / saving if saving > 0 else np.inf
                rows.append({"step": step, "group": g.id, "k_from": state[g.id], "k_to": k,
                             "channels_left": g.channels - k, "predicted_saving_ms": saving,
                             "predicted_latency_ms": float(lat), "v1": v1, "v2": v2,
                             "predicted_acc": current_acc - loss, "score": score,
                             "fresh": fresh, "accepted": False})  # fmt: skip
            best = int(np.argmin([r["score"] for r in rows]))
            if not np.isfinite(rows[best]["score"]):
                raise InputError(
                    "no candidate lowers the predicted latency further; raise the budget"
                )
            rows[best]["accepted"] = True
            log += rows
            chosen = rows[best]
            state[chosen["group"]] = chosen["k_to"]
            bar.update(round(current_ms - chosen["predicted_latency_ms"], 4))
            current_ms, current_acc = chosen["predicted_latency_ms"], chosen["predicted_acc"]
            deltas = {k: v for k, v in deltas.items() if k[0] != chosen["group"]}
            step += 1
    finally:
        bar.close()
    return state, log


def _knapsack(problem: _Problem) -> tuple[dict[str, int], list[dict]]:
    scores = {}
    for g in problem.prunable:
        raw = importance_fn(problem.config.importance)(problem.model, g, seed=problem.config.seed)
        raw = np.asarray(raw, dtype=float)
        scores[g.id] = np.sort(raw / (raw.mean() + 1e-12))  # ascending: removal order
    state = {g.id: 0 for g in problem.prunable}
    target = problem.config.budget * problem.base_ms
    current_ms, log, step = problem.base_ms, [], 0
    while current_ms > target:
        candidates = [(g, problem.next_k(g, state[g.id])) for g in problem.prunable]
        candidates = [(g, k) for g, k in candidates if k is not None]
        if not candidates:
            raise InputError(_NO_CANDIDATE)
        latencies = problem.latency([{**state, g.id: k} for g, k in candidates])
        rows = []
        for (g, k), lat in zip(candidates, latencies, strict=True):
            value = float(scores[g.id][state[g.id] : k].sum())
            saving = current_ms - float(lat)
            rows.append({"step": step, "group": g.id, "k_from": state[g.id], "k_to": k,
                         "channels_left": g.channels - k, "predicted_saving_ms": saving,
                         "predicted_latency_ms": float(lat), "importance_lost": value,
                         "score": value / saving if saving > 0 else np.inf,
                         "accepted": False})  # fmt: skip
        best = int(np.argmin([r["score"] for r in rows]))
        rows[best]["accepted"] = True
        log += rows
        state[rows[best]["group"]] = rows[best]["k_to"]
        current_ms = rows[best]["predicted_latency_ms"]
        step += 1
    return state, log


def _uniform(problem: _Problem) -> tuple[dict[str, int], list[dict]]:
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
        raise InputError(_NO_CANDIDATE)
    return state_at(hi), log


_METHODS: dict[str, Callable[[_Problem], tuple[dict[str, int], list[dict]]]] = {
    "ttmpd": _greedy,
    "knapsack": _knapsack,
    "uniform": _uniform,
}


def prune(
    model: nn.Module,
    example_input: torch.Tensor,
    predictor: LatencyPredictor,
    calib_images: torch.Tensor,
    config: SearchConfig,
) -> PruneResult:
    """Prune ``model`` to ``config.budget`` of its predicted latency.

    ``example_input`` is one batch shaped like deployment (e.g. ``(1, C, H, W)``; it fixes
    the latency units); ``calib_images`` are unlabeled test samples ``(N, C, H, W)``,
    already normalised, used for pseudo labels, adaptive BN and the proxies.
    """
    start = time.perf_counter()
    problem = _Problem(model, example_input, predictor, calib_images, config)
    problem.check_reachable()
    state, log = _METHODS[config.method](problem)
    return problem.finish(state, log, start)
