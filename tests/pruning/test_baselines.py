"""Each baseline does what makes it that method (HALP's saliency and schedule, EagleEye's
best proxy, NetAdapt's short-term fine-tuning, Torch-Pruning's default magnitude)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from nets import ResidualNet

from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.profiler import GridConfig, get_backend
from ttmpd.pruning import SearchConfig, adapt_bn, prune
from ttmpd.pruning._baselines import _tp_magnitude_scores
from ttmpd.pruning._halp import HALP_ROUNDS
from ttmpd.pruning._problem import SearchProblem
from ttmpd.pruning._proxies import agreement

X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
CALIB = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    net = ResidualNet().eval()
    adapt_bn(net, CALIB)
    lut = tmp_path_factory.mktemp("lut") / "lut.parquet"
    grid = GridConfig(channel_step=4, off_grid_per_unit=4)
    table = profile_model(net, X, get_backend("fake"), lut, progress=False, grid=grid).table
    return net, LatencyPredictor().fit(table)


def _kept(result, gid: str) -> list[int]:
    return list(result.plan.keep.get(gid, range(result.plan.channels.get(gid, 16))))


def test_halp_removes_a_dead_channel_whatever_its_weight_magnitude(setup):
    net, predictor = setup
    dead = ResidualNet().eval()
    dead.load_state_dict(net.state_dict())
    with torch.no_grad():  # channel 3 of conv1: the largest filter, silenced by its BN
        dead.conv1.weight[3] *= 50
        dead.bn1.weight[3] = 0.0
        dead.bn1.bias[3] = 0.0
    result = prune(dead, X, predictor, CALIB, SearchConfig(budget=0.5, method="halp",
                                                             progress=False))  # fmt: skip
    assert "conv1" in result.plan.keep and 3 not in result.plan.keep["conv1"]
    # a magnitude criterion keeps it: the test tells saliency from magnitude
    magnitude = prune(dead, X, predictor, CALIB, SearchConfig(budget=0.5, method="knapsack",
                                                                progress=False))  # fmt: skip
    assert 3 in _kept(magnitude, "conv1")


def test_halp_prunes_in_rounds_towards_the_budget_and_fine_tunes_in_between(setup):
    net, predictor = setup
    result = prune(net, X, predictor, CALIB, SearchConfig(budget=0.6, method="halp",
                                                           progress=False))  # fmt: skip
    log = result.log
    assert len(log) >= HALP_ROUNDS
    assert (np.diff(log["target_ms"]) <= 1e-12).all() and (np.diff(log["removed"]) >= 0).all()
    # the first round aims at 1/R of the way, not at the budget
    first = log["target_ms"].iloc[0]
    expected = result.base_latency_ms - (result.base_latency_ms - result.target_latency_ms) / 5
    assert first == pytest.approx(expected, rel=1e-9)
    assert result.predicted_latency_ms <= result.target_latency_ms + 1e-9
    # fine-tuned: the classifier's kept columns are no longer the original's
    kept = list(result.plan.keep["stem.0"]) if "stem.0" in result.plan.keep else list(range(16))
    assert not torch.allclose(result.model.fc.weight, net.fc.weight[:, kept])


@pytest.mark.parametrize("method", ["halp", "netadapt"])
def test_fine_tuning_baselines_train_a_frozen_model(setup, method):
    net, predictor = setup
    frozen = ResidualNet().eval()
    frozen.load_state_dict(net.state_dict())
    frozen.requires_grad_(False)  # as distill() leaves its teacher
    result = prune(frozen, X, predictor, CALIB, SearchConfig(budget=0.8, method=method,
                                                              progress=False))  # fmt: skip
    kept = list(result.plan.keep["stem.0"]) if "stem.0" in result.plan.keep else list(range(16))
    assert not torch.allclose(result.model.fc.weight, net.fc.weight[:, kept])
    assert not any(p.requires_grad for p in frozen.parameters())  # the input is not touched


def test_eagleeye_returns_its_best_candidate_by_the_proxy(setup):
    net, predictor = setup
    result = prune(net, X, predictor, CALIB, SearchConfig(budget=0.6, method="eagleeye",
                                                           progress=False))  # fmt: skip
    log = result.log
    best = log.loc[log["accepted"]].iloc[0]
    assert best["v1"] == log["v1"].max() and log["v1"].nunique() > 1
    assert best["predicted_latency_ms"] == pytest.approx(result.predicted_latency_ms)
    # the returned model (adaptive BN on the calibration images) is that candidate
    with torch.no_grad():
        v1 = agreement(result.model(CALIB), net(CALIB))
    assert v1 == pytest.approx(best["v1"], abs=1e-9)


def test_netadapt_short_term_fine_tunes_and_keeps_the_best_candidate(setup):
    net, predictor = setup
    result = prune(net, X, predictor, CALIB, SearchConfig(budget=0.7, method="netadapt",
                                                           progress=False))  # fmt: skip
    log = result.log
    for _, rows in log.groupby("iteration"):
        accepted = rows.loc[rows["accepted"]]
        assert len(accepted) == 1
        assert accepted["short_ft_agreement"].iloc[0] == rows["short_ft_agreement"].max()
    kept = list(result.plan.keep["stem.0"]) if "stem.0" in result.plan.keep else list(range(16))
    assert not torch.allclose(result.model.fc.weight, net.fc.weight[:, kept])


def test_tp_magnitude_ranks_by_torch_prunings_default_l2(setup):
    net, predictor = setup
    spread = ResidualNet().eval()
    spread.load_state_dict(net.state_dict())
    with torch.no_grad():  # conv1 channel 0: one entry of 3; channel 1: nine entries of 0.5
        spread.conv1.weight.fill_(1.0)
        spread.conv1.weight[0].zero_()
        spread.conv1.weight[0, 0, 0, 0] = 3.0
        spread.conv1.weight[1].zero_()
        spread.conv1.weight[1, 0].fill_(0.5)
        spread.bn1.weight.fill_(1.0)
        spread.conv2.weight.fill_(0.1)
    config = SearchConfig(budget=0.7, method="tp-magnitude")
    problem = SearchProblem(spread, X, predictor, CALIB, config)
    scores = _tp_magnitude_scores(problem)["conv1"]
    # L2: channel 1 (sum of squares 2.25) below channel 0 (9); L1 would say 4.5 > 3
    assert scores[1] < scores[0] and np.argmin(scores) == 1


def test_tp_magnitude_round_to_keeps_multiples(setup):
    net, predictor = setup
    config = SearchConfig(budget=0.7, method="tp-magnitude", progress=False)
    free = prune(net, X, predictor, CALIB, config)
    rounded = prune(net, X, predictor, CALIB, replace(config, round_to=4))
    kept = [len(k) for k in rounded.plan.keep.values()]
    assert kept and all(n % 4 == 0 for n in kept)
    assert any(len(k) % 4 for k in free.plan.keep.values())


def test_ttmpd_gradual_searches_in_rounds_and_fine_tunes_between_them(setup, monkeypatch):
    """Round targets step 1/R of the way each; the model is fine-tuned towards the unpruned
    model's logits before every round but the first; the plan rebuilds the returned model."""
    import ttmpd.pruning._gradual as gradual
    from ttmpd.pruning import apply_plan

    net, predictor = setup
    tuned = []
    real = gradual.short_finetune

    def spy(model, images, teacher, steps, **kwargs):
        tuned.append((steps, teacher.clone()))
        return real(model, images, teacher, steps, **kwargs)

    monkeypatch.setattr(gradual, "short_finetune", spy)
    result = prune(net, X, predictor, CALIB, SearchConfig(budget=0.5, method="ttmpd-gradual",
                                                           progress=False))  # fmt: skip
    rounds = result.log[result.log["phase"] == "round"]
    base, target = result.base_latency_ms, result.target_latency_ms
    expected = [base - (base - target) * r / gradual.GRADUAL_ROUNDS for r in rounds["round"]]
    np.testing.assert_allclose(rounds["target_ms"], expected, rtol=1e-9)
    assert (rounds["predicted_latency_ms"] <= rounds["target_ms"] + 1e-9).all()
    assert len(tuned) == len(rounds) - 1 >= 1  # no fine-tuning before the first round
    with torch.no_grad():
        teacher = net.eval()(CALIB)
    assert all(steps == gradual.GRADUAL_STEPS and torch.equal(t, teacher) for steps, t in tuned)
    rebuilt = apply_plan(net, X, result.plan)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in result.model.parameters()]
    assert result.predicted_latency_ms <= result.target_latency_ms + 1e-9
    # fine-tuned: the classifier's kept columns are no longer the original's
    kept = list(result.plan.keep["stem.0"]) if "stem.0" in result.plan.keep else list(range(16))
    assert not torch.allclose(result.model.fc.weight, net.fc.weight[:, kept])


def test_short_finetune_leaves_bn_statistics_of_its_final_weights():
    """The running statistics averaged over the steps lag behind the weights; the returned
    model's are those a fresh adaptive-BN pass finds with its final weights."""
    import copy

    from ttmpd.pruning._finetune import short_finetune

    net = ResidualNet().eval()
    with torch.no_grad():
        teacher = net(CALIB)
    torch.manual_seed(3)
    student = ResidualNet().eval()
    tuned = short_finetune(student, CALIB, teacher, 6, batch_size=8, lr=0.05)
    assert not tuned.training
    fresh = adapt_bn(copy.deepcopy(tuned), CALIB, 8)
    bns = [m for m in tuned.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    want = [m for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    for got, ref in zip(bns, want, strict=True):
        torch.testing.assert_close(got.running_mean, ref.running_mean)
        torch.testing.assert_close(got.running_var, ref.running_var)
