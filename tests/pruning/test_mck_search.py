"""ttmpd's score-once search: batched adaptive BN, the knapsack solver, the refine step."""

import itertools
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nets import DepthwiseNet, ResidualNet
from torch import nn

from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.profiler import GridConfig, get_backend
from ttmpd.pruning import (
    BudgetSearch,
    ChannelGroup,
    ChannelMasker,
    MemberSlice,
    SearchConfig,
    adapt_bn,
    channel_groups,
    prune,
)
from ttmpd.pruning._batched import BatchedCandidates, supported
from ttmpd.pruning._bn import adaptive_bn_logits
from ttmpd.pruning._mck_search import _solve, _value, refine, relinearize, tighten
from ttmpd.pruning._mckp import best_feasible, pareto_choices

X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
CALIB = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _net(net_cls):
    torch.manual_seed(0)
    net = net_cls().eval()
    return adapt_bn(net, CALIB)


def _candidates(groups):
    prunable = [g for g in groups if g.prunable]
    first = prunable[0]
    return [
        {},
        {first.id: list(range(first.channels - 2))},  # nearly all of a group: big BN shift
        {g.id: [1, 3] for g in prunable},
        {prunable[-1].id: [0]},
        {},
    ]


@pytest.mark.parametrize("net_cls", [ResidualNet, DepthwiseNet])
@pytest.mark.parametrize("max_samples", [1, 48, 10_000])
def test_batched_logits_equal_one_at_a_time_adaptive_bn(net_cls, max_samples):
    net = _net(net_cls)
    groups = channel_groups(net, X)
    masker = ChannelMasker(net, groups)
    candidates = _candidates(groups)
    alone = [adaptive_bn_logits(masker.masked(c), CALIB) for c in candidates]
    batched = BatchedCandidates(net, groups, CALIB, max_samples=max_samples)
    together = batched.logits(candidates)
    for one, other in zip(alone, together, strict=True):
        torch.testing.assert_close(other, one, rtol=1e-4, atol=1e-4)
    # one recording pass, then one forward per chunk: with max_samples=10_000 all
    # candidates share one forward, so statistics must not leak between them
    assert batched.forwards == 1 + math.ceil(len(candidates) / batched.per_forward)
    assert batched.evaluated == len(candidates)
    if batched.per_forward < len(candidates):  # the unpruned candidates replay it all
        assert batched.replayed > 0
    # the unpruned candidate's outputs do not depend on what shares its forward
    torch.testing.assert_close(together[0], together[-1])


class InplaceNet(nn.Module):
    """Two residual blocks written flat, with in-place adds and ReLUs (torchvision style):
    a replayed BN output must not carry the in-place add made after it was recorded."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.relu = nn.ReLU(inplace=True)
        self.a1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.a2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c1, self.d1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.d2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        out = self.b2(self.a2(self.relu(self.b1(self.a1(x)))))
        out += x
        x = self.relu(out)
        out = self.d2(self.c2(self.relu(self.d1(self.c1(x)))))
        out += x
        return self.fc(self.relu(out).mean((2, 3)))


def test_replay_is_exact_with_in_place_ops():
    net = _net(InplaceNet)
    groups = channel_groups(net, X)
    masker = ChannelMasker(net, groups)
    candidates = [{"c1": [0, 2, 5]}, {"c1": [1]}, {}, {"a1": [3]}]
    batched = BatchedCandidates(net, groups, CALIB, max_samples=2 * len(CALIB))
    together = batched.logits(candidates)
    assert batched.replayed > 0
    for candidate, out in zip(candidates, together, strict=True):
        alone = adaptive_bn_logits(masker.masked(candidate), CALIB)
        torch.testing.assert_close(out, alone, rtol=1e-4, atol=1e-4)


def test_unsupported_out_members_are_reported():
    net = _net(ResidualNet)
    groups = channel_groups(net, X)
    assert supported(net, groups)
    odd = ChannelGroup("relu", 2, (("relu", "out"),), True,
                       slices=(MemberSlice("relu", "out", (0, 1), (0, 1)),))  # fmt: skip
    assert not supported(net, [*groups, odd])


def test_batched_leaves_the_model_untouched():
    net = _net(ResidualNet)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batched = BatchedCandidates(net, channel_groups(net, X), CALIB)
    batched.logits(_candidates(channel_groups(net, X)))
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(tensor, before[name])
    assert not any(m.training for m in net.modules())


def _brute_force(saving, value, need):
    best = -np.inf
    for choice in itertools.product(*[range(len(s)) for s in saving]):
        s = sum(saving[g][i] for g, i in enumerate(choice))
        v = sum(value[g][i] for g, i in enumerate(choice))
        if s >= need - 1e-12:
            best = max(best, v)
    return best


def test_knapsack_front_is_optimal_on_a_small_instance():
    rng = np.random.default_rng(0)
    saving = [np.concatenate([[0.0], np.sort(rng.uniform(0, 3, n))]) for n in (3, 2, 4, 3)]
    value = [np.concatenate([[0.0], -np.sort(rng.uniform(0, 1, len(s) - 1))]) for s in saving]
    choices, total_s, total_v = pareto_choices(saving, value)
    # totals match the choices, the front is sorted and non-dominated
    for c, s, v in zip(choices, total_s, total_v, strict=True):
        assert s == pytest.approx(sum(saving[g][i] for g, i in enumerate(c)))
        assert v == pytest.approx(sum(value[g][i] for g, i in enumerate(c)))
    assert (np.diff(total_s) > 0).all() and (np.diff(total_v) < 0).all()  # a trade-off
    for need in np.linspace(0, sum(s[-1] for s in saving), 23):
        ok = total_s >= need - 1e-12
        assert total_v[ok].max() == pytest.approx(_brute_force(saving, value, need))


def test_knapsack_hand_made_instance():
    # need 3 ms: cheapest is a (2 ms, -0.1) + b (1 ms, -0.1), not b's 3 ms step (-0.5)
    saving = [[0, 2, 3], [0, 1, 3]]
    value = [[0, -0.1, -0.6], [0, -0.1, -0.5]]
    choices, total_s, total_v = pareto_choices(saving, value)
    row = best_feasible(choices, total_v, lambda c: total_s >= 3)
    assert choices[row].tolist() == [1, 1] and total_v[row] == pytest.approx(-0.2)
    # an exact (non-additive) check that rejects it moves to the next best front point
    # that fits; (0, 2) would be better (-0.5) but is dominated by (1, 1), so not on the front
    row = best_feasible(choices, total_v, lambda c: (total_s >= 3) & (c[:, 1] != 1))
    assert choices[row].tolist() == [1, 2] and total_v[row] == pytest.approx(-0.6)
    assert best_feasible(choices, total_v, lambda c: np.zeros(len(c), bool)) is None


def test_refine_never_worsens_and_takes_strict_improvements():
    rng = np.random.default_rng(1)
    for _ in range(20):
        table: dict[tuple, float] = {}

        def evaluate(choices, table=table):
            return np.array([table.setdefault(tuple(c), rng.uniform()) for c in choices])

        def candidates(choice, seen):
            out = [choice + d for d in (np.array([1, 0]), np.array([0, 1]))]
            return [c for c in out if tuple(c) not in seen]

        start_acc = rng.uniform()
        best, acc = refine(evaluate, candidates, np.array([0, 0]), start_acc, rounds=4)
        assert acc >= start_acc
        if acc > start_acc:
            assert table[tuple(best)] == acc
        else:
            assert best.tolist() == [0, 0]
    # nothing better nearby: the incumbent stays
    best, acc = refine(lambda c: np.zeros(len(c)), lambda c, s: [c + 1], np.array([2]), 0.5, 3)
    assert best.tolist() == [2] and acc == 0.5


@pytest.fixture
def residual_problem(tmp_path):
    net = _net(ResidualNet)
    table = profile_model(net, X, get_backend("fake"), tmp_path / "lut.parquet", progress=False,
                          grid=GridConfig(channel_step=4, off_grid_per_unit=4)).table  # fmt: skip
    return net, LatencyPredictor().fit(table)


@pytest.mark.parametrize("budget", [0.4, 0.7])
def test_search_meets_the_budget_and_refine_does_not_lose(residual_problem, budget):
    net, predictor = residual_problem
    config = SearchConfig(budget=budget, progress=False, proxy_images=16, refine_candidates=3)
    result = prune(net, X, predictor, CALIB, config)
    assert result.predicted_latency_ms <= result.target_latency_ms + 1e-9
    log = result.log
    assert set(log["phase"]) >= {"score", "solve"}
    evaluated = log[log["phase"].isin(["solve", "refine"])]
    assert (evaluated["predicted_latency_ms"] <= result.target_latency_ms + 1e-9).all()
    solve = float(log.loc[log["phase"] == "solve", "proxy_score"].iloc[0])
    chosen = log[log["accepted"]]
    assert len(chosen) == 1 and float(chosen["proxy_score"].iloc[0]) >= solve
    plan = result.plan
    removed = {f"{g}={plan.channels[g] - len(plan.keep[g])}" for g in plan.keep}
    assert set(chosen["state"].iloc[0].split(",")) == removed - {f"{g}=0" for g in plan.keep}
    assert (log["forwards"].diff().dropna() >= 0).all() and log["forwards"].iloc[-1] >= 1


def test_a_search_at_a_second_budget_reuses_the_scores_and_matches_a_fresh_one(
    residual_problem, monkeypatch
):
    """A re-search (the budget check's) evaluates only states the first search never saw,
    and chooses what a search from scratch at that budget chooses."""
    net, predictor = residual_problem
    evaluated: list[int] = []
    logits = BatchedCandidates.logits

    def counting(self, candidates):
        evaluated.append(len(candidates))
        return logits(self, candidates)

    monkeypatch.setattr(BatchedCandidates, "logits", counting)
    config = SearchConfig(budget=0.7, progress=False, proxy_images=16, refine_candidates=3)
    search = BudgetSearch(net, X, predictor, CALIB, config)
    first = search(0.7)
    at_first = sum(evaluated)
    second = search(0.45)
    at_second = sum(evaluated) - at_first
    fresh = prune(net, X, predictor, CALIB, replace(config, budget=0.45))
    from_scratch = sum(evaluated) - at_first - at_second
    assert second.plan.keep == fresh.plan.keep != first.plan.keep
    assert second.target_latency_ms == pytest.approx(fresh.target_latency_ms)
    np.testing.assert_allclose(second.log["proxy_score"], fresh.log["proxy_score"], rtol=1e-4)
    assert second.log[["phase", "state"]].equals(fresh.log[["phase", "state"]])
    # every state the second search logs that the first did not, evaluated once
    unseen = set(second.log["state"]) - set(first.log["state"])
    assert at_second == len(unseen) < from_scratch
    assert from_scratch == fresh.log["state"].nunique()


def test_one_at_a_time_fallback_chooses_the_same_plan(residual_problem, monkeypatch):
    net, predictor = residual_problem
    config = SearchConfig(budget=0.5, progress=False, proxy_images=16)
    batched = prune(net, X, predictor, CALIB, config)
    monkeypatch.setattr("ttmpd.pruning._mck_search.supported", lambda model, groups: False)
    alone = prune(net, X, predictor, CALIB, config)
    assert alone.plan.keep == batched.plan.keep
    np.testing.assert_allclose(alone.log["proxy_score"], batched.log["proxy_score"], rtol=1e-4)


def test_masking_the_embedding_width_computes_what_the_pruned_vit_computes():
    """LayerNorms normalise over the kept channels only (the residual stream still holds
    position embeddings in masked channels): masked == pruned, one at a time and batched."""
    from pathlib import Path

    import ttmpd.models
    from ttmpd.models import load_checkpoint
    from ttmpd.pruning import GroupOptions, apply_plan, plan_from_removed

    model = load_checkpoint(Path(ttmpd.models.__file__).parent / "vit_mnist.pt").model.eval()
    images = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    groups = channel_groups(model, images[:1], options=GroupOptions(embedding=True))
    heads = next(g.id for g in groups if g.id.endswith("#heads") and g.prunable)
    candidates = [{"patch_embed": [0, 5, 9, 30, 63]}, {"patch_embed": list(range(0, 64, 2)),
                  heads: [1]}, {}]  # fmt: skip
    masker = ChannelMasker(model, groups)
    batched = BatchedCandidates(model, groups, images)
    together = batched.logits(candidates)
    for removed, from_batch in zip(candidates, together, strict=True):
        pruned = apply_plan(model, images[:1], plan_from_removed(groups, removed))
        with torch.no_grad():
            expected = pruned(images)
            alone = masker.masked(removed)(images)
        torch.testing.assert_close(alone, expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(from_batch, expected, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # and the masker's hooks are gone once it is reset
        torch.testing.assert_close(masker.reset()(images), model(images))


def _coupled_problem(budget: float):
    """Two groups feeding one conv: latency (ms) = (16 − a)(16 − b)/256 (a, b removed), so
    removing both saves less than the sum of removing each alone."""

    def latency(states):
        return np.array([(16 - s.get("a", 0)) * (16 - s.get("b", 0)) / 256 for s in states])

    return SimpleNamespace(prunable=[SimpleNamespace(id="a"), SimpleNamespace(id="b")],
                           latency=latency, base_ms=1.0,
                           config=SimpleNamespace(budget=budget))  # fmt: skip


def test_tighten_spends_the_slack_on_the_most_valuable_feasible_undos():
    steps = [[0, 2, 4, 6, 8, 10], [0, 2, 4, 6, 8, 10]]
    value = [np.array([0, -0.1, -0.2, -0.4, -0.8, -1.6]),  # a: cheap to prune
             np.array([0, -0.3, -0.6, -1.0, -1.5, -2.0])]  # fmt: skip
    problem = _coupled_problem(budget=0.5)
    start = np.array([5, 5])  # 10 and 10 removed: 0.14 ms, far under the 0.5 target
    tight = tighten(problem, steps, value, start)
    state = [{"a": steps[0][tight[0]], "b": steps[1][tight[1]]}]
    assert problem.latency(state)[0] <= 0.5
    for g in range(2):  # no single undo of the result still fits
        undo = tight.copy()
        undo[g] -= 1
        if undo[g] >= 0:
            s = {"a": steps[0][undo[0]], "b": steps[1][undo[1]]}
            assert problem.latency([s])[0] > 0.5

    # the greedy path, by hand: undo gains 0.8 (a), 0.5 (b), 0.5 (b), 0.4 (a, tied with b:
    # the first group wins), 0.4 (b); then neither undo fits
    assert tight.tolist() == [3, 2]
    assert sum(value[g][i] for g, i in enumerate(tight)) > sum(value[g][i] for g, i in
                                                                 enumerate(start))  # fmt: skip


def _scaled_problem(budget: float):
    """An embedding-like group ``e`` scales two others: latency (ms) =
    (4 − e)/4 · ((4 − a) + (4 − b))/8 (e, a, b removed, 4 channels each), so every saving
    measured from the unpruned model overstates what ``e`` saves once ``a`` and ``b`` are
    cut, and the reverse."""

    def latency(states):
        return np.array([(4 - s.get("e", 0)) / 4 * ((4 - s.get("a", 0)) + (4 - s.get("b", 0)))
                         / 8 for s in states])  # fmt: skip

    return SimpleNamespace(prunable=[SimpleNamespace(id=g) for g in "eab"], latency=latency,
                           base_ms=1.0, config=SimpleNamespace(budget=budget))  # fmt: skip


def test_relinearize_reaches_the_feasible_state_the_additive_front_hides():
    steps = [[0, 1, 2, 3]] * 3
    value = [np.array([0, -0.3, -1.0, -2.0]),  # e: costly to cut
             np.array([0, -0.05, -0.2, -0.4]), np.array([0, -0.1, -0.3, -0.4])]  # fmt: skip
    problem = _scaled_problem(budget=0.45)
    names = [g.id for g in problem.prunable]
    saving = [1.0 - problem.latency([{g: k} for k in ks])
              for g, ks in zip(names, steps, strict=True)]  # fmt: skip
    first = _solve(problem, steps, saving, value)

    def fits(choice):
        return problem.latency([dict(zip(names, choice, strict=True))])[0] <= 0.45

    # the brute-force optimum: (0, 2, 3), 0.375 ms, worth -0.6; the first solve misses it
    best = max((c for c in itertools.product(range(4), repeat=3) if fits(c)),
               key=lambda c: _value(value, np.array(c)))  # fmt: skip
    assert best == (0, 2, 3)
    assert _value(value, first[3]) < _value(value, np.array(best)) - 0.1
    assert relinearize(problem, steps, value, first, 0)[3].tolist() == first[3].tolist()

    again = relinearize(problem, steps, value, first, 3)[3]
    assert tuple(again.tolist()) == best and fits(again)
    # one round already finds it; a round that finds nothing better keeps the incumbent
    assert tuple(relinearize(problem, steps, value, first, 1)[3].tolist()) == best


def test_relinearize_never_trades_the_incumbent_for_a_worse_state():
    steps = [[0, 1, 2, 3]] * 3
    problem = _scaled_problem(budget=0.5)
    names = [g.id for g in problem.prunable]
    saving = [1.0 - problem.latency([{g: k} for k in ks])
              for g, ks in zip(names, steps, strict=True)]  # fmt: skip
    rng = np.random.default_rng(3)
    for _ in range(25):
        value = [np.concatenate([[0.0], -np.cumsum(rng.uniform(0.01, 1.0, 3))]) for _ in steps]
        first = _solve(problem, steps, saving, value)
        out = relinearize(problem, steps, value, first, 3)[3]
        assert _value(value, out) >= _value(value, first[3])
        assert problem.latency([dict(zip(names, out, strict=True))])[0] <= 0.5


def test_the_solved_state_leaves_no_single_undo_that_fits(residual_problem):
    """The solve row's state is tight: undoing any one staircase step of it breaks the
    budget (a knapsack front point chosen on additive savings can sit far under it)."""
    from ttmpd.pruning._mck_search import staircase
    from ttmpd.pruning._problem import SearchProblem

    net, predictor = residual_problem
    config = SearchConfig(budget=0.55, progress=False, proxy_images=16, refine_rounds=0)
    result = prune(net, X, predictor, CALIB, config)
    problem = SearchProblem(net, X, predictor, CALIB, config)
    solve = result.log.loc[result.log["phase"] == "solve", "state"].iloc[0]
    state = dict((g, int(k)) for g, k in (p.split("=") for p in solve.split(",") if p))
    target = config.budget * problem.base_ms
    for group in problem.prunable:
        k = state.get(group.id, 0)
        if not k:
            continue
        ks = staircase(problem, group)
        undone = {**state, group.id: ks[ks.index(k) - 1]}
        assert problem.latency([undone])[0] > target, group.id
