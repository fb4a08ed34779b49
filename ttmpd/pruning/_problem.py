"""The pruning problem every search method shares: config, groups, latency, proxies.

A pruning *state* maps a prunable group id to how many channels it has lost; by default
always the least important ones (a per-group ranking by ``importance``, computed once).
Latency comes only from the predictor (:meth:`ttmpd.lut.PruneSavings.latencies`, exact for
the whole state); nothing is measured inside a search.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._device import check_device_spec, module_device, on_device, resolve_device
from ..errors import InputError
from ..lut import PruneSavings
from ._apply import apply_plan, plan_from_removed
from ._bn import adapt_bn, adaptive_bn_logits
from ._groups import ChannelGroup, GroupOptions, channel_groups
from ._importance import importance as importance_fn
from ._mask import ChannelMasker
from ._plan import PrunePlan
from ._pricing import GroupPricing
from ._proxies import AccuracyModel, agreement, kd_gap

logger = logging.getLogger(__name__)
#: ttmpd's search, then the baselines run beside it (see _search and _baselines).
METHODS = (
    "ttmpd",
    "ttmpd-gradual",
    "ttmpd-greedy",
    "knapsack",
    "uniform",
    "halp",
    "eagleeye",
    "netadapt",
    "tp-magnitude",
)
NO_CANDIDATE = "no candidate lowers the predicted latency further; raise the budget"


@dataclass(frozen=True)
class SearchConfig:
    """Settings of :func:`prune`. ``budget``: target latency / unpruned latency, in (0, 1).

    ``groups``: which group kinds the search may prune (:class:`GroupOptions`).
    ``refresh_every`` belongs to ``ttmpd-greedy``; ``proxy_images`` (None: all calibration
    images), ``max_samples`` (candidates × images per forward), ``relinearize_rounds``,
    ``refine_rounds`` and ``refine_candidates`` to ``ttmpd``
    (:mod:`ttmpd.pruning._mck_search`); ``round_to``
    (keep multiples of it; None: any count) to ``tp-magnitude``. ``device`` (``cpu``,
    ``cuda``, ``cuda:N``): where candidates, adaptive BN, importance gradients and
    short fine-tunes compute; the caller's model is copied there, never moved, and the
    pruned model comes back on the caller's device. Latency is priced on the CPU either way.
    """

    budget: float
    method: str = "ttmpd"
    importance: str = "l1"
    max_group_ratio: float = 0.9
    min_step: float = 0.125
    refresh_every: int = 4
    proxy_images: int | None = 32
    max_samples: int = 256
    relinearize_rounds: int = 3
    refine_rounds: int = 2
    refine_candidates: int = 4
    accuracy_model: AccuracyModel = field(default_factory=AccuracyModel)
    round_to: int | None = None
    seed: int = 0
    progress: bool = True
    groups: GroupOptions = field(default_factory=GroupOptions)
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_device_spec(self.device)
        if not 0 < self.budget < 1:
            raise InputError(
                f"budget must be a fraction of the original latency in (0, 1), got "
                f"{self.budget}; e.g. 0.5 keeps half the latency"
            )
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        for name in ("max_samples", "refine_candidates"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.round_to is not None and self.round_to < 1:
            raise InputError(f"round_to must be >= 1 (or None), got {self.round_to}")
        for name in ("refine_rounds", "relinearize_rounds"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.proxy_images is not None and self.proxy_images < 2:
            raise InputError(
                f"proxy_images must be >= 2 (or None for all), got {self.proxy_images}"
            )
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


class SearchProblem:
    """Everything the search methods share."""

    def __init__(self, model, example_input, predictor, images, config: SearchConfig) -> None:
        #: where the caller's model lives (results go back there) and where work computes
        self.home, self.device = module_device(model), resolve_device(config.device)
        host = on_device(model, torch.device("cpu")).eval()  # pricing and groups
        self.x = (example_input.cpu() if isinstance(example_input, torch.Tensor)
                  else tuple(t.cpu() for t in example_input))  # fmt: skip
        self.config = config
        self.groups = channel_groups(host, self.x, options=config.groups)
        self.savings = PruneSavings(predictor, host, self.x)
        #: the model every forward and structural edit works on (a copy when on a device)
        self.model = on_device(host, self.device)
        self.images = images.to(self.device)
        self.pricing = GroupPricing(self.groups, self.savings)
        self.prunable = [g for g in self.groups if g.prunable and g.id in self.pricing.members]
        if not self.prunable:
            raise InputError("the model has no prunable channel group the LUT can price")
        with torch.no_grad():
            self.teacher = self.model(self.images)
        #: raw importance per channel of each prunable group, and its ascending order
        self.scores = self._scores()
        self.order = {g: np.argsort(v, kind="stable") for g, v in self.scores.items()}
        #: importance removed by dropping a group's k least important channels, at index k
        self._removed_mass = {
            g: np.concatenate([[0.0], np.cumsum(np.clip(v[self.order[g]], 0, None))])
            for g, v in self.scores.items()
        }
        self._total_mass = sum(float(m[-1]) for m in self._removed_mass.values())
        self.base_ms = float(self.latency([{}])[0])
        self.max_k = {g.id: int(self.config.max_group_ratio * g.channels) for g in self.prunable}
        #: what searches at other budgets reuse (:meth:`with_budget`): the candidate
        #: evaluator and every state's proxies, keyed by its nonzero removals
        self.shared: dict = {}

    def with_budget(self, budget: float) -> SearchProblem:
        """This problem at another ``budget`` (fraction of the predicted original): groups,
        pricing, teacher outputs, importance and :attr:`shared` are the same objects, not
        rebuilt."""
        other = copy.copy(self)
        other.config = replace(self.config, budget=budget)
        return other

    def _scores(self) -> dict[str, np.ndarray]:
        kwargs: dict = {"seed": self.config.seed}
        if self.config.importance in ("taylor", "bn_taylor"):
            target = self.teacher.argmax(1)

            def loss_fn(m: nn.Module) -> torch.Tensor:
                return F.cross_entropy(m(self.images), target)

            kwargs["loss_fn"] = loss_fn
        score = importance_fn(self.config.importance)
        return {g.id: np.asarray(score(self.model, g, **kwargs), dtype=float)
                for g in self.prunable}  # fmt: skip

    def latency(self, states: list[dict[str, int]]) -> np.ndarray:
        return self.pricing.latency(states)

    def next_k(self, group: ChannelGroup, k: int) -> int | None:
        """The next removal count on the group's latency staircase, or None."""
        curve = self.pricing.curve(group)
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
        """``(V1, V2)`` of the masked candidate after adaptive BN on the proxy images."""
        logits = adaptive_bn_logits(masker.masked(self.removed(state)), self.images)
        return agreement(logits, self.teacher), kd_gap(logits, self.teacher)

    def kept(self, state: dict[str, int]) -> float:
        """Share of the prunable groups' importance mass the state keeps, in (0, 1]:
        ``1 − Σ_g (importance of g's removed channels) / Σ_g (importance of g)``."""
        if self._total_mass <= 0:
            return 1.0
        removed = sum(float(self._removed_mass[g][k]) for g, k in state.items() if k)
        return max(1.0 - removed / self._total_mass, 1e-6)

    def proxy_score(self, masker: ChannelMasker, state: dict[str, int]) -> dict:
        """V1, V2, kept and the proxy score of ``state`` (:class:`AccuracyModel`: a ranking
        score, not an accuracy)."""
        v1, v2 = self.proxies(masker, state)
        kept = self.kept(state)
        acc = float(self.config.accuracy_model.predict(v1, v2, kept))
        return {"v1": v1, "v2": v2, "kept": kept, "proxy_score": acc}

    def finish(
        self,
        state: dict[str, int],
        log: list[dict],
        start: float,
        removed: dict[str, list[int]] | None = None,
        model: nn.Module | None = None,
    ) -> PruneResult:
        """The result for ``state``; ``removed`` (original channel indices per group) and
        ``model`` (an already pruned model) override the importance order and re-pruning."""
        removed = self.removed(state) if removed is None else removed
        meta = {"method": self.config.method, "budget": self.config.budget}
        plan = plan_from_removed(self.groups, removed, model=self.model, metadata=meta)
        pruned = model if model is not None else apply_plan(self.model, self.x, plan)
        pruned = adapt_bn(pruned.to(self.device), self.images).to(self.home)
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
        """Raise unless removing the most each group allows meets the budget. A group's
        deepest removal is the largest ``k <= max_k`` the predictor can price (a latency
        unit may not be priceable below some width)."""
        deepest = {}
        for g in self.prunable:
            curve = self.pricing.curve(g)[: self.max_k[g.id] + 1]
            finite = np.flatnonzero(np.isfinite(curve))
            deepest[g.id] = int(finite[-1]) if finite.size else 0
        floor = float(self.latency([deepest])[0])
        if not np.isfinite(floor):
            raise InputError(
                "the deepest prune the groups allow cannot be priced (a layer would lose all "
                "its channels); leave out --head-dims or --embedding"
            )
        if floor > self.config.budget * self.base_ms:
            raise InputError(
                f"the budget is below what pruning can reach: at most "
                f"{self.config.max_group_ratio:.0%} of each group's channels gives "
                f"{floor / self.base_ms:.2f} of the original latency (predicted); raise the "
                f"budget above that"
            )


def progress_bar(problem: SearchProblem, total: float):
    return tqdm(
        total=round(problem.base_ms - total, 4),
        desc=f"prune {problem.config.method}",
        unit="ms",
        disable=None if problem.config.progress else True,
        leave=False,
        bar_format="{desc}: {bar} {n:.3f}/{total:.3f} ms saved [{elapsed}<{remaining}]",
    )
