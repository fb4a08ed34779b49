import numpy as np
import pytest
import torch
from nets import ConcatNet, DepthwiseNet, ResidualNet, SENet

from ttmpd.errors import InputError
from ttmpd.models import create_model
from ttmpd.pruning import IMPORTANCES, channel_groups, importance, parameter_grads


def groups_of(net, x):
    return {g.id: g for g in channel_groups(net, x)}


def pseudo_label_loss(x):
    def loss_fn(model):
        logits = model(x)
        return torch.nn.functional.cross_entropy(logits, logits.argmax(1).detach())

    return loss_fn


def test_registry_names():
    assert IMPORTANCES.names() == ["bn_scale", "bn_taylor", "l1", "l2", "random", "taylor"]
    with pytest.raises(InputError, match="choose one of: bn_scale, bn_taylor, l1"):
        importance("fisher")


@pytest.mark.parametrize("name", ["l1", "l2", "bn_scale", "random", "taylor"])
@pytest.mark.parametrize("net_cls", [ResidualNet, DepthwiseNet, ConcatNet])
def test_shapes_and_finiteness(name, net_cls, x16):
    net = net_cls().eval()
    ctx = {"loss_fn": pseudo_label_loss(x16)} if name == "taylor" else {}
    for g in channel_groups(net, x16):
        scores = importance(name)(net, g, **ctx)
        assert scores.shape == (g.channels,) and scores.dtype == np.float64
        assert np.isfinite(scores).all() and (scores >= 0).all()


def test_zeroed_channel_has_lowest_l1_and_l2(x16):
    net = ResidualNet().eval()
    with torch.no_grad():  # zero channel 5 of the residual stream in every producer
        net.stem[0].weight[5] = 0
        net.conv2.weight[5] = 0
    g = groups_of(net, x16)["stem.0"]
    for name in ("l1", "l2"):
        scores = importance(name)(net, g)
        assert scores.argmin() == 5 and scores[5] == 0
    # l1 is the sum of |w| over the producers' filters: an independent computation
    expected = (
        (net.stem[0].weight.abs().sum((1, 2, 3)) + net.conv2.weight.abs().sum((1, 2, 3)))
        .detach()
        .numpy()
    )
    np.testing.assert_allclose(importance("l1")(net, g), expected, rtol=1e-6)


def test_depthwise_and_concat_importance_use_the_right_slices(x16):
    net = DepthwiseNet().eval()
    g = groups_of(net, x16)["expand.0"]
    expected = (
        (net.expand[0].weight.abs().sum((1, 2, 3)) + net.dw[0].weight.abs().sum((1, 2, 3)))
        .detach()
        .numpy()
    )
    np.testing.assert_allclose(importance("l1")(net, g), expected, rtol=1e-6)
    cat = ConcatNet().eval()
    g = groups_of(cat, x16)["b"]
    np.testing.assert_allclose(
        importance("l1")(cat, g), cat.b.weight.abs().sum((1, 2, 3)).detach().numpy(), rtol=1e-6
    )


def test_bn_taylor_is_halps_saliency_summed_over_the_groups_batchnorms(x16):
    net = ResidualNet().train()
    with torch.no_grad():  # non-trivial shifts so the beta term matters
        for bn in (net.stem[1], net.bn1, net.bn2):
            bn.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(3))
    loss_fn = pseudo_label_loss(x16)
    grads = parameter_grads(net, loss_fn)

    def saliency(bn, name):  # |gamma * dL/dgamma + beta * dL/dbeta|, written out
        g_w, g_b = grads[f"{name}.weight"], grads[f"{name}.bias"]
        return (bn.weight * g_w + bn.bias * g_b).abs().detach().numpy()

    groups = groups_of(net, x16)
    np.testing.assert_allclose(
        importance("bn_taylor")(net, groups["conv1"], grads=grads), saliency(net.bn1, "bn1"),
        rtol=1e-6,
    )  # fmt: skip
    # the residual stream: stem BN and bn2 both produce it; per-BN absolute values add
    stream = importance("bn_taylor")(net, groups["stem.0"], loss_fn=loss_fn)
    expected = saliency(net.stem[1], "stem.1") + saliency(net.bn2, "bn2")
    np.testing.assert_allclose(stream, expected, rtol=1e-5)


def test_bn_scale_ranks_by_gamma(x16):
    net = ResidualNet().eval()
    gamma = torch.linspace(-2.0, 1.0, 16)  # |gamma| smallest at index 10 (value 0.0)
    with torch.no_grad():
        net.bn1.weight.copy_(gamma)
    scores = importance("bn_scale")(net, groups_of(net, x16)["conv1"])
    np.testing.assert_allclose(scores, gamma.abs().numpy(), rtol=1e-6)
    assert scores.argmin() == 10
    # a group without BatchNorm falls back to l1
    se = SENet().eval()
    g = groups_of(se, x16)["fc1"]
    np.testing.assert_array_equal(importance("bn_scale")(se, g), importance("l1")(se, g))


def test_random_is_seeded(x16):
    net = ResidualNet().eval()
    g = groups_of(net, x16)["conv1"]
    a, b = importance("random")(net, g, seed=1), importance("random")(net, g, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, importance("random")(net, g, seed=2))


def test_taylor_matches_manual_computation_and_restores_grads(x16):
    net = ResidualNet().eval()
    g = groups_of(net, x16)["conv1"]
    loss_fn = pseudo_label_loss(x16)
    net.conv1.weight.grad = torch.ones_like(net.conv1.weight)
    scores = importance("taylor")(net, g, loss_fn=loss_fn)
    assert torch.equal(net.conv1.weight.grad, torch.ones_like(net.conv1.weight))
    grads = parameter_grads(net, loss_fn)
    manual = (
        (net.conv1.weight * grads["conv1.weight"]).abs().sum((1, 2, 3))
        + (net.bn1.weight * grads["bn1.weight"]).abs()
        + (net.bn1.bias * grads["bn1.bias"]).abs()
        + (net.conv2.weight * grads["conv2.weight"]).abs().sum((0, 2, 3))
    ).detach()
    np.testing.assert_allclose(scores, manual.numpy(), rtol=1e-5)
    np.testing.assert_allclose(importance("taylor")(net, g, grads=grads), scores, rtol=1e-6)
    with pytest.raises(InputError, match="loss_fn"):
        importance("taylor")(net, g)


def test_zoo_importance_shapes(x32):
    model = create_model("mobilenet_v2").eval()
    for g in channel_groups(model, x32)[:6]:
        assert importance("l2")(model, g).shape == (g.channels,)


def test_group_of_another_model_is_rejected(x16):
    g = groups_of(ResidualNet().eval(), x16)["stem.0"]
    with pytest.raises(InputError, match="not in this model"):
        importance("l1")(DepthwiseNet(), g)
