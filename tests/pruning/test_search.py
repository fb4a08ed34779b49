"""The latency-aware search on tiny residual and depthwise models (fake backend LUTs)."""

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from nets import DepthwiseNet, ResidualNet

from ttmpd.errors import InputError
from ttmpd.lut import LatencyPredictor, PruneSavings, profile_model
from ttmpd.models import load_checkpoint
from ttmpd.profiler import GridConfig, get_backend
from ttmpd.pruning import (
    METHODS,
    BudgetSearch,
    ChannelMasker,
    PrunePlan,
    SearchConfig,
    adapt_bn,
    apply_plan,
    channel_groups,
    prune,
    save_prune_result,
)

X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
CALIB = torch.randn(32, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _net(net_cls):
    torch.manual_seed(0)
    net = net_cls().eval()
    adapt_bn(net, CALIB)  # give BN real statistics
    return net


@functools.cache
def _table(net_cls):
    """The fake device's table of ``_net(net_cls)``, profiled once per test process."""
    with tempfile.TemporaryDirectory() as d:
        grid = GridConfig(channel_step=4, off_grid_per_unit=4)
        out = Path(d) / "lut.parquet"
        return profile_model(_net(net_cls), X, get_backend("fake"), out, grid=grid,
                             progress=False).table  # fmt: skip


def _setup(net_cls):
    """A fresh net (seed 0, BN adapted) and a predictor fitted now on its table."""
    return _net(net_cls), LatencyPredictor().fit(_table(net_cls))


@pytest.mark.parametrize("net_cls", [ResidualNet, DepthwiseNet])
@pytest.mark.parametrize("method", METHODS)
def test_search_meets_the_budget_and_the_model_runs(net_cls, method):
    net, predictor = _setup(net_cls)
    config = SearchConfig(budget=0.7, method=method, progress=False)
    if method == "tp-magnitude" and net_cls is DepthwiseNet:  # 16-channel groups
        rounded = SearchConfig(budget=0.7, method=method, progress=False, round_to=8)
        with pytest.raises(InputError, match="multiples of 8 channels"):
            prune(net, X, predictor, CALIB, rounded)
    result = prune(net, X, predictor, CALIB, config)
    assert result.predicted_latency_ms <= result.target_latency_ms + 1e-9
    with torch.no_grad():
        out, ref = result.model(CALIB[:4]), net(CALIB[:4])
    assert out.shape == ref.shape
    assert sum(p.numel() for p in result.model.parameters()) < sum(
        p.numel() for p in net.parameters()
    )
    # the predictor agrees with itself on the physically pruned model
    whole = predictor.predict_model(result.model, X).total_ms
    assert whole == pytest.approx(result.predicted_latency_ms, rel=1e-6)
    # the plan rebuilds the same architecture from a fresh original
    rebuilt = apply_plan(net, X, result.plan)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in result.model.parameters()]


@pytest.mark.parametrize("method", ["ttmpd-greedy", "knapsack", "uniform", "halp", "tp-magnitude"])
def test_a_second_budget_searches_as_from_scratch(method):
    """BudgetSearch shares one problem between budgets: no method may leave it changed
    (ttmpd's reuse of scored states has its own test in test_mck_search.py; the slower
    eagleeye, netadapt and ttmpd-gradual work on copies the same way)."""
    net, predictor = _setup(ResidualNet)
    config = SearchConfig(budget=0.8, method=method, progress=False)
    search = BudgetSearch(net, X, predictor, CALIB, config)
    first, second = search(0.8), search(0.6)
    fresh = prune(net, X, predictor, CALIB, SearchConfig(budget=0.6, method=method,
                                                         progress=False))  # fmt: skip
    assert second.plan.keep == fresh.plan.keep
    assert second.predicted_latency_ms == pytest.approx(fresh.predicted_latency_ms)
    assert first.predicted_latency_ms > second.predicted_latency_ms


def test_greedy_latency_decreases_along_the_search():
    net, predictor = _setup(ResidualNet)
    config = SearchConfig(budget=0.5, method="ttmpd-greedy", progress=False)
    result = prune(net, X, predictor, CALIB, config)
    accepted = result.log[result.log["accepted"]]
    latencies = accepted["predicted_latency_ms"].to_numpy()
    assert len(latencies) >= 2 and (latencies[1:] < latencies[:-1]).all()
    assert {
        "group",
        "k_from",
        "k_to",
        "predicted_saving_ms",
        "v1",
        "v2",
        "proxy_score",
        "loss_per_ms",
    } <= set(result.log.columns)


def test_masking_matches_physical_pruning():
    net, _ = _setup(ResidualNet)
    groups = channel_groups(net, X)
    removed = {g.id: [0, 3, 5] for g in groups if g.prunable}
    from ttmpd.pruning import plan_from_removed

    plan = plan_from_removed(groups, removed, model=net)
    pruned = apply_plan(net, X, plan)
    masked = ChannelMasker(net, groups).masked(removed)
    with torch.no_grad():
        torch.testing.assert_close(masked(CALIB), pruned(CALIB), rtol=1e-4, atol=1e-5)


def test_plan_round_trips_and_reapplies(tmp_path):
    net, predictor = _setup(ResidualNet)
    result = prune(net, X, predictor, CALIB, SearchConfig(budget=0.6, progress=False))
    summary = save_prune_result(result, tmp_path / "out", X, num_classes=10)
    plan = PrunePlan.from_json(tmp_path / "out" / "plan.json")
    again = adapt_bn(apply_plan(net, X, plan), CALIB)
    loaded = load_checkpoint(tmp_path / "out" / "model.pt").model
    with torch.no_grad():
        torch.testing.assert_close(again(CALIB), result.model(CALIB))
        torch.testing.assert_close(loaded(CALIB), result.model(CALIB))
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["predicted_latency_ms"] == pytest.approx(summary["predicted_latency_ms"])
    if saved["files"]["exported"]:
        program = torch.export.load(str(tmp_path / "out" / "model.pt2"))
        with torch.no_grad():
            torch.testing.assert_close(program.module()(X), result.model(X))


@pytest.mark.parametrize("budget", [0.0, -0.5, 1.0, 1.5])
def test_out_of_range_budgets(budget):
    with pytest.raises(InputError, match="budget must be a fraction"):
        SearchConfig(budget=budget)


@pytest.mark.parametrize("name", ["refine_rounds", "relinearize_rounds"])
def test_negative_round_counts_are_refused(name):
    with pytest.raises(InputError, match=f"{name} must be >= 0, got -1"):
        SearchConfig(budget=0.5, **{name: -1})


def test_unreachable_budget_names_the_floor():
    net, predictor = _setup(ResidualNet)
    with pytest.raises(InputError, match=r"below what pruning can reach.*raise the budget"):
        prune(net, X, predictor, CALIB, SearchConfig(budget=0.01, progress=False))


def test_latency_of_states_is_exact_for_shared_units():
    net, predictor = _setup(ResidualNet)
    savings = PruneSavings(predictor, net, X)
    groups = [g for g in channel_groups(net, X) if g.prunable]
    removed = {g.id: list(range(4)) for g in groups}
    from ttmpd.pruning import plan_from_removed

    pruned = apply_plan(net, X, plan_from_removed(groups, removed, model=net))
    mapping = {"stem.0": "stem.0", "conv1": "conv1"}
    state = {mapping[g.id]: 4 for g in groups if g.id in mapping}
    assert len(state) == len(groups)
    predicted = savings.latencies([state])[0]
    assert predicted == pytest.approx(predictor.predict_model(pruned, X).total_ms, rel=1e-6)


def test_pareto_front_and_sweep(tmp_path):
    from ttmpd.pruning import pareto_front, pareto_sweep, plot_pareto

    front = pareto_front([1.0, 2.0, 3.0, 2.5], [0.5, 0.9, 0.95, 0.8])
    assert front.tolist() == [True, True, True, False]
    net, predictor = _setup(ResidualNet)
    with torch.no_grad():
        labels = net(CALIB).argmax(1)
    fake = get_backend("fake")

    def evaluate(model):
        with torch.no_grad():
            return float((model(CALIB).argmax(1) == labels).float().mean())

    from ttmpd.executor import JobJournal

    journal = JobJournal(tmp_path / "pareto.journal", {"test": 1})
    done = {"method": "uniform", "budget": 0.8, "predicted_ms": 0.1, "measured_ms": 0.2,
            "accuracy": 0.25, "search_s": 0.0, "plan_id": "journaled"}  # fmt: skip
    journal.append("uniform@0.8", done)  # finished by an earlier, interrupted run
    frame = pareto_sweep(net, X, predictor, CALIB, evaluate,
                         lambda m: fake.measure_model(m, X).median_ms, [0.5, 0.8],
                         ["ttmpd", "uniform"], progress=False, journal=journal)  # fmt: skip
    assert frame.iloc[4].drop("on_front").to_dict() == done  # taken from the journal, in order
    assert len(journal.load()) == 5
    frame = frame.iloc[:4]
    assert len(frame) == 4 and frame.iloc[0]["method"] == "original"
    assert frame.iloc[0]["accuracy"] == 1.0 and frame["on_front"].any()
    pruned = frame.iloc[1:]
    assert (pruned["measured_ms"] < frame.iloc[0]["measured_ms"]).all()
    path = plot_pareto(frame, tmp_path / "pareto.png")
    assert path.stat().st_size > 1000


def test_greedy_walks_past_a_step_the_whole_model_does_not_price_lower():
    from types import SimpleNamespace

    from ttmpd.pruning._search import first_lowering_step

    # whole-model latency by removal count of group "g": step 2 costs more than step 0
    # (a coupled group already pruned), step 4 is the first that lowers it
    by_k = {0: 1.0, 2: 1.05, 4: 0.9, 6: 0.8}
    problem = SimpleNamespace(
        latency=lambda states: np.array([by_k[s["g"]] for s in states]),
        next_k=lambda group, k: k + 2 if k + 2 in by_k else None,
    )
    group = SimpleNamespace(id="g")
    assert first_lowering_step(problem, {"g": 0}, group, 2, current_ms=1.0) == 4
    assert first_lowering_step(problem, {"g": 0}, group, 2, current_ms=0.5) is None
    assert first_lowering_step(problem, {"g": 0}, group, None, current_ms=1.0) is None
