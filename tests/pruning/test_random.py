import numpy as np
import pytest
import torch
from nets import DepthwiseNet, ResidualNet

from ttmpd.errors import InputError
from ttmpd.models import create_model
from ttmpd.pruning import apply_plan, channel_groups, importance, random_plan


@pytest.fixture(scope="module")
def resnet20():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    return model, x, channel_groups(model, x)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.3, 0.5, 0.8])
def test_hits_the_target_ratio(resnet20, target):
    model, x, groups = resnet20
    plan = random_plan(model, x, groups, target, seed=7)
    assert set(plan.keep) == {g.id for g in groups if g.prunable}
    assert plan.removed_fraction == pytest.approx(target, abs=0.01)
    ratios = [1 - len(plan.keep[g]) / plan.channels[g] for g in plan.keep]
    assert max(ratios) <= 0.9 + 1e-9 and min(len(k) for k in plan.keep.values()) >= 1
    assert plan.metadata["seed"] == 7 and plan.metadata["target_ratio"] == target


def test_per_group_ratios_are_random_and_seeded(resnet20):
    model, x, groups = resnet20
    a = random_plan(model, x, groups, 0.5, seed=1)
    b = random_plan(model, x, groups, 0.5, seed=1)
    c = random_plan(model, x, groups, 0.5, seed=2)
    assert a == b and a != c
    ratios = [1 - len(a.keep[g]) / a.channels[g] for g in a.keep]
    assert np.std(ratios) > 0.05  # not a uniform ratio


def test_removes_lowest_l1_channels(resnet20):
    model, x, groups = resnet20
    plan = random_plan(model, x, groups, 0.5, seed=4)
    for g in groups:
        if not g.prunable or len(plan.keep[g.id]) == g.channels:
            continue
        scores = importance("l1")(model, g)
        kept = list(plan.keep[g.id])
        dropped = list(plan.removed(g.id))
        assert scores[kept].min() >= scores[dropped].max()


def test_round_to(resnet20):
    model, x, groups = resnet20
    plan = random_plan(model, x, groups, 0.5, seed=3, round_to=8)
    assert all(len(keep) % 8 == 0 for keep in plan.keep.values())
    assert plan.removed_fraction == pytest.approx(0.5, abs=0.03)
    pruned = apply_plan(model, x, plan)
    for m in pruned.modules():
        if isinstance(m, torch.nn.Conv2d) and m.in_channels != 3:
            assert m.out_channels % 8 == 0


def test_round_to_keeps_narrow_groups_whole(x16):
    net = DepthwiseNet().eval()  # groups of 8 and 32 channels
    plan = random_plan(net, x16, None, 0.3, seed=0, round_to=16)
    assert len(plan.keep["stem"]) == 8  # narrower than round_to: untouched
    assert len(plan.keep["expand.0"]) % 16 == 0


def test_min_channels(resnet20):
    model, x, groups = resnet20
    plan = random_plan(model, x, groups, 0.8, seed=0, min_channels=4)
    assert min(len(k) for k in plan.keep.values()) >= 4


def test_bad_arguments(x16):
    net = ResidualNet().eval()
    with pytest.raises(InputError, match="target_ratio"):
        random_plan(net, x16, None, 1.2, seed=0)
    with pytest.raises(InputError, match=r"0\.95 is above the 0\.875 these groups allow"):
        random_plan(net, x16, None, 0.95, seed=0)
    with pytest.raises(InputError, match="round_to"):
        random_plan(net, x16, None, 0.3, seed=0, round_to=0)
    with pytest.raises(InputError, match="seed"):
        random_plan(net, x16, None, 0.3, seed="a")
    with pytest.raises(InputError, match="min_channels"):
        random_plan(net, x16, None, 0.3, seed=0, min_channels=0)
