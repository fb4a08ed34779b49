"""The label-free proxies and the accuracy model that combines them."""

import numpy as np
import pytest
import torch
from nets import ResidualNet

from ttmpd.errors import InputError
from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.profiler import GridConfig, get_backend
from ttmpd.pruning import PROXIES, AccuracyModel, SearchConfig, adapt_bn
from ttmpd.pruning._problem import SearchProblem
from ttmpd.pruning._proxies import agreement, agreement_proxies, kd_gap


def test_agreement_and_kd_gap_on_known_logits():
    teacher = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, 3.0]])
    assert agreement(teacher, teacher) == 1.0
    assert agreement(teacher.flip(1), teacher) == 0.0
    assert kd_gap(teacher, teacher) == pytest.approx(0.0, abs=1e-6)
    assert kd_gap(teacher.flip(1), teacher) > kd_gap(0.5 * teacher, teacher) > 0
    assert set(PROXIES) >= {"agreement", "kd_gap"}


def test_default_model_is_one_for_the_unpruned_model_and_monotone():
    model = AccuracyModel()
    assert float(model.predict(1.0, 0.0, 1.0)) == pytest.approx(1.01**0.25)
    base = float(model.predict(0.5, 5.0, 0.6))
    assert float(model.predict(0.6, 5.0, 0.6)) > base  # more agreement
    assert float(model.predict(0.5, 4.0, 0.6)) > base  # smaller distillation gap
    assert float(model.predict(0.5, 5.0, 0.7)) > base  # more importance kept


def test_heavily_pruned_candidates_do_not_tie():
    # the earlier linear model clipped all of these to 0 and ranked them as ties
    v1 = np.array([0.10, 0.12, 0.19, 0.25])
    v2 = np.array([11.5, 11.0, 10.5, 9.5])
    kept = np.array([0.25, 0.30, 0.35, 0.45])
    predicted = AccuracyModel().predict(v1, v2, kept)
    assert (np.diff(predicted) > 0).all()


def test_fit_recovers_the_coefficients_that_generated_the_data():
    rng = np.random.default_rng(0)
    v1, v2, kept = rng.uniform(0.1, 1, 30), rng.uniform(0, 12, 30), rng.uniform(0.2, 1, 30)
    truth = AccuracyModel(scale=0.8, w_kept=0.7, w_agreement=0.3, w_kd_gap=0.02)
    fitted = AccuracyModel.fit(v1, v2, truth.predict(v1, v2, kept), kept)
    for name in ("scale", "w_kept", "w_agreement", "w_kd_gap"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=1e-6)


def test_fit_keeps_the_model_monotone_on_anti_correlated_data():
    v1, v2 = np.array([0.2, 0.4, 0.6, 0.8, 0.9]), np.array([9.0, 7.0, 5.0, 3.0, 2.0])
    accuracy = np.array([0.9, 0.8, 0.7, 0.6, 0.5])  # falls as V1 rises: not a usable signal
    fitted = AccuracyModel.fit(v1, v2, accuracy)
    assert min(fitted.w_kept, fitted.w_agreement, fitted.w_kd_gap) >= 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            ([0.5] * 3, [1.0] * 3, [0.5] * 3),
            "^fitting the .* needs >= 4 candidates with V1, V2, acc$",
        ),
        (
            ([0.5] * 4, [1.0] * 5, [0.5] * 4),
            "^fitting the .* needs >= 4 candidates with V1, V2, acc$",
        ),
        (
            ([0.5] * 4, [1.0] * 4, [0.5, 0.5, 0.0, 0.5]),
            "^fine-tuned accuracies must be > 0 to fit the accuracy model$",
        ),
    ],
)
def test_fit_rejects_bad_input(args, match):
    with pytest.raises(InputError, match=match):
        AccuracyModel.fit(*args)
    with pytest.raises(InputError, match=r"^kept importance share must be > 0$"):
        AccuracyModel().predict(0.5, 1.0, 0.0)


def test_kept_share_sums_the_removed_importance(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    calib = torch.randn(16, 3, 32, 32)
    net = ResidualNet().eval()
    adapt_bn(net, calib)
    table = profile_model(net, x, get_backend("fake"), tmp_path / "lut.parquet", progress=False,
                          grid=GridConfig(channel_step=4)).table  # fmt: skip
    problem = SearchProblem(net, x, LatencyPredictor().fit(table), calib,
                            SearchConfig(budget=0.5, progress=False))  # fmt: skip
    assert problem.kept({}) == 1.0
    group = problem.prunable[0].id
    scores = problem.scores[group]
    total = sum(float(v.sum()) for v in problem.scores.values())
    expected = 1 - float(np.sort(scores)[:3].sum()) / total
    assert problem.kept({group: 3}) == pytest.approx(expected)
    everything = {g.id: g.channels for g in problem.prunable}
    assert problem.kept(everything) == pytest.approx(1e-6)


def test_proxies_of_a_model_on_hand_worked_logits():
    # the model returns its input as logits: argmax (0, 1, 1) against the teacher's (0, 0, 1)
    images = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    v1, v2 = agreement_proxies(torch.nn.Identity(), images, teacher)
    assert v1 == pytest.approx(2 / 3)
    p_t = np.exp(teacher.numpy() / 4) / np.exp(teacher.numpy() / 4).sum(1, keepdims=True)
    p_s = np.exp(images.numpy() / 4) / np.exp(images.numpy() / 4).sum(1, keepdims=True)
    expected = 16 * (p_t * np.log(p_t / p_s)).sum(1).mean()
    assert v2 == pytest.approx(expected, rel=1e-5)


def test_predict_without_kept_means_nothing_was_removed():
    model = AccuracyModel(scale=0.9, w_kept=2.0, w_agreement=0.5, w_kd_gap=0.1)
    # 0.9 * 1^2 * (0.5 + 0.01)^0.5 * exp(-0.1 * 3)
    assert float(model.predict(0.5, 3.0)) == pytest.approx(0.9 * 0.51**0.5 * np.exp(-0.3))


def test_single_precision_inputs_are_computed_in_double():
    rng = np.random.default_rng(1)
    v1, v2, kept = rng.uniform(0.1, 1, 8), rng.uniform(0, 12, 8), rng.uniform(0.2, 1, 8)
    single = [a.astype(np.float32) for a in (v1, v2, kept)]
    double = [a.astype(np.float64) for a in single]  # the same values, in float64
    model = AccuracyModel(scale=0.8, w_kept=0.7, w_agreement=0.3, w_kd_gap=0.02)
    np.testing.assert_array_equal(model.predict(*single), model.predict(*double))
    accuracy = model.predict(*double).astype(np.float32)
    fitted = AccuracyModel.fit(*single[:2], accuracy, single[2])
    assert fitted == AccuracyModel.fit(*double[:2], accuracy.astype(np.float64), double[2])
