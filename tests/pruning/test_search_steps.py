"""The search strategies step by step on a hand-made problem whose answers are worked out
by hand: two groups of 8 channels, latency staircases of 2 channels, additive costs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ttmpd.errors import InputError
from ttmpd.pruning import SearchConfig, _search
from ttmpd.pruning._halp import halp
from ttmpd.pruning._problem import NO_CANDIDATE

#: accuracy lost by each group at each removal count (B is cheap first, then expensive)
ACC_LOSS = {"A": {0: 0.0, 2: 0.1, 4: 0.2, 6: 0.3}, "B": {0: 0.0, 2: 0.04, 4: 0.34, 6: 0.64}}


class Problem:
    """10 ms unpruned; every 2 channels removed from a group save ``ms_per_step[g]`` (1 ms);
    the kept importance share is 1 - (removed channels) / 32."""

    def __init__(
        self, budget, max_k=None, scores=None, refresh_every=4, max_ratio=0.9, ms_per_step=None
    ):
        self.ms_per_step = ms_per_step or {"A": 1.0, "B": 1.0}
        self.acc_loss = ACC_LOSS
        self.prunable = [SimpleNamespace(id="A", channels=8), SimpleNamespace(id="B", channels=8)]
        self.groups = self.prunable
        self.model = None
        self.base_ms = 10.0
        self.max_k = max_k or {"A": 6, "B": 6}
        self.scores = scores or {}
        self.config = SimpleNamespace(
            budget=budget,
            refresh_every=refresh_every,
            max_group_ratio=max_ratio,
            progress=False,
            method="test",
        )

    def latency(self, states):
        saved = [sum(self.ms_per_step[g] * k / 2 for g, k in s.items()) for s in states]
        return self.base_ms - np.array(saved)

    def next_k(self, group, k):
        return k + 2 if k + 2 <= self.max_k[group.id] else None

    def proxy_score(self, masker, state):
        acc = 1.0 - sum(self.acc_loss[g][k] for g, k in state.items())
        kept = 1 - sum(state.values()) / 32
        return {"v1": acc, "v2": 1 - acc, "kept": kept, "proxy_score": acc}


def _accepted(log):
    return [(r["step"], r["group"], r["k_to"]) for r in log if r["accepted"]]


def test_knapsack_removes_the_cheapest_importance_per_ms_first():
    # importance normalised by the group mean, sorted: A = 1 1 1 1 ..., B = 0.4 0.4 1.2 ...
    scores = {"A": np.ones(8), "B": np.array([3, 3, 1, 3, 3, 3, 1, 3], dtype=float)}
    state, log = _search._knapsack(Problem(0.75, scores=scores))
    # step 0: A 2/1, B 0.8/1 -> B; step 1: A 2, B 2.4 -> A; step 2: A 2, B 2.4 -> A (7 ms)
    assert _accepted(log) == [(0, "B", 2), (1, "A", 2), (2, "A", 4)]
    assert state == {"A": 4, "B": 2}
    first = {r["group"]: r for r in log if r["step"] == 0}
    assert first["B"]["importance_lost"] == pytest.approx(0.8)
    assert first["A"]["loss_per_ms"] == pytest.approx(2.0)
    assert first["B"]["predicted_saving_ms"] == pytest.approx(1.0)
    assert (first["A"]["k_from"], first["A"]["channels_left"]) == (0, 6)
    last = [r for r in log if r["step"] == 2]
    assert {r["group"]: r["importance_lost"] for r in last} == pytest.approx({"A": 2, "B": 2.4})
    assert {r["group"]: r["predicted_latency_ms"] for r in last} == {"A": 7.0, "B": 7.0}


def test_knapsack_without_a_step_left_names_the_fix():
    problem = Problem(0.5, max_k={"A": 2, "B": 2}, scores={"A": np.ones(8), "B": np.ones(8)})
    with pytest.raises(InputError, match="no candidate lowers the predicted latency further"):
        _search._knapsack(problem)


def test_uniform_bisects_to_the_smallest_ratio_meeting_the_budget():
    # 10 - (k_A + k_B) / 2 <= 7.5 with k_A = min(round(8 r), 2) and k_B = round(8 r):
    # k_B = 3, i.e. the ratio just above 2.5 / 8 (round() takes 2.5 to 2)
    state, log = _search._uniform(Problem(0.75, max_k={"A": 2, "B": 6}))
    assert state == {"A": 2, "B": 3}
    assert [row["step"] for row in log] == list(range(30))
    assert log[0]["ratio"] == pytest.approx(0.45)  # the middle of [0, 0.9]
    assert log[-1]["ratio"] == pytest.approx(2.5 / 8, abs=1e-6)
    for row in log:
        k = round(8 * row["ratio"])
        assert row["predicted_latency_ms"] == 10 - (min(k, 2) + k) / 2
        assert row["accepted"] == (row["predicted_latency_ms"] <= 7.5)


def test_uniform_accepts_a_budget_met_exactly():
    state, _ = _search._uniform(Problem(0.8, max_k={"A": 6, "B": 6}))  # 8 ms: k = 2 each
    assert state == {"A": 2, "B": 2}


def test_uniform_out_of_reach_names_the_fix():
    with pytest.raises(InputError, match="no candidate lowers the predicted latency further"):
        _search._uniform(Problem(0.5, max_k={"A": 2, "B": 2}))


def test_greedy_takes_the_least_accuracy_lost_per_ms(monkeypatch):
    monkeypatch.setattr(_search, "ChannelMasker", lambda model, groups: None)
    state, log = _search._greedy(Problem(0.75, refresh_every=10))
    # step 0: A loses 0.1, B 0.04 -> B; step 1: A 0.1, B 0.3 -> A; step 2: A 0.1 -> A (7 ms)
    assert _accepted(log) == [(0, "B", 2), (1, "A", 2), (2, "A", 4)]
    assert state == {"A": 4, "B": 2}
    rows = {(r["step"], r["group"]): r for r in log}
    assert rows[0, "B"]["loss_per_ms"] == pytest.approx(0.04 + 1e-6)
    assert rows[1, "B"]["proxy_score"] == pytest.approx(0.66)
    assert rows[2, "A"]["proxy_score"] == pytest.approx(0.76)
    assert rows[2, "A"]["predicted_saving_ms"] == pytest.approx(1.0)
    assert rows[2, "A"]["channels_left"] == 4
    assert (rows[2, "A"]["k_from"], rows[2, "A"]["v1"]) == (2, pytest.approx(0.76))
    assert rows[2, "A"]["kept"] == 1 - (4 + 2) / 32  # the candidate's state
    # every candidate scored at step 0; later only new ones, the rest reuse their deltas
    fresh = [(r["step"], r["group"], r["fresh"]) for r in log]
    expected = [(0, "A", True), (0, "B", True), (1, "A", False), (1, "B", True)]
    assert fresh == [*expected, (2, "A", True), (2, "B", False)]


def test_greedy_refreshes_every_candidate_on_schedule(monkeypatch):
    monkeypatch.setattr(_search, "ChannelMasker", lambda model, groups: None)
    _, log = _search._greedy(Problem(0.75, refresh_every=2))
    assert [r["fresh"] for r in log] == [True, True, False, True, True, True]


def test_greedy_out_of_reach_names_the_fix(monkeypatch):
    monkeypatch.setattr(_search, "ChannelMasker", lambda model, groups: None)
    with pytest.raises(InputError, match=f"^{NO_CANDIDATE}$"):
        _search._greedy(Problem(0.5, max_k={"A": 2, "B": 2}))


@pytest.mark.parametrize("method", ["_greedy", "_knapsack"])
def test_a_step_landing_on_the_budget_ends_the_search(method, monkeypatch):
    monkeypatch.setattr(_search, "ChannelMasker", lambda model, groups: None)
    scores = {"A": np.ones(8), "B": np.array([3, 3, 1, 3, 3, 3, 1, 3], dtype=float)}
    # budget 0.8 of 10 ms: the second step reaches 8 ms exactly, and the search stops there
    state, log = getattr(_search, method)(Problem(0.8, scores=scores))
    assert state == {"A": 2, "B": 2}
    assert [r["predicted_latency_ms"] for r in log if r["accepted"]] == [9.0, 8.0]


def test_greedy_scores_loss_per_ms_saved(monkeypatch):
    monkeypatch.setattr(_search, "ChannelMasker", lambda model, groups: None)
    problem = Problem(0.9, ms_per_step={"A": 1.0, "B": 2.0})
    problem.acc_loss = {"A": ACC_LOSS["A"], "B": {0: 0.0, 2: 0.15, 4: 0.3, 6: 0.45}}
    # A: 0.1 lost for 1 ms (0.1 per ms); B: 0.15 lost for 2 ms (0.075 per ms) -> B
    state, log = _search._greedy(problem)
    assert state == {"A": 0, "B": 2}
    first = {r["group"]: r["loss_per_ms"] for r in log}
    assert first == pytest.approx({"A": 0.1 + 1e-6, "B": (0.15 + 1e-6) / 2})


def test_a_step_that_only_matches_the_current_latency_does_not_lower_it():
    by_k = {0: 1.0, 2: 1.0, 4: 0.9}
    group = SimpleNamespace(id="g", step=2)
    problem = SimpleNamespace(
        latency=lambda states: np.array([by_k[s["g"]] for s in states]),
        next_k=lambda g, k: k + g.step if k + g.step in by_k else None,
    )
    assert _search.first_lowering_step(problem, {"g": 0}, group, 2, current_ms=1.0) == 4


def test_knapsack_divides_importance_by_the_ms_saved():
    # B's two least important channels: 1.33 normalised importance for 2 ms (0.67 per ms);
    # A's: 2 for 1 ms. Per ms B goes first; multiplied, A would
    scores = {"A": np.ones(8), "B": np.array([3, 3, 1, 1, 1, 1, 1, 1], dtype=float)}
    problem = Problem(0.85, scores=scores, ms_per_step={"A": 1.0, "B": 2.0})
    state, log = _search._knapsack(problem)
    assert state == {"A": 0, "B": 2}
    assert {r["group"]: r["loss_per_ms"] for r in log} == pytest.approx({"A": 2.0, "B": 4 / 3 / 2})


def test_knapsack_never_takes_a_step_that_saves_nothing():
    scores = {"A": np.ones(8), "B": np.array([1, 1, 9, 9, 9, 9, 9, 9], dtype=float)}
    problem = Problem(0.8, scores=scores, ms_per_step={"A": 1.0, "B": 0.0})
    state, log = _search._knapsack(problem)
    assert state == {"A": 4, "B": 0}  # B is the least important, but saves no time
    assert all(r["loss_per_ms"] == np.inf for r in log if r["group"] == "B")


class _Stop(Exception):
    pass


def test_knapsack_keeps_the_configured_importance_and_halp_is_its_own_method(monkeypatch):
    seen = []

    def problem(model, x, predictor, calib, config):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(_search, "SearchProblem", problem)
    with pytest.raises(_Stop):
        _search.prune(None, None, None, None, SearchConfig(budget=0.5, method="knapsack"))
    assert seen[0].importance == "l1" and seen[0].method == "knapsack"
    assert _search._METHODS["knapsack"] is _search._knapsack
    # HALP as published (its own saliency and schedule) is a baseline, not the knapsack
    assert "halp" not in _search._METHODS and _search.BASELINES["halp"] is halp
