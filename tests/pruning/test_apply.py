import copy
import json

import pytest
import torch
from nets import ConcatNet, DepthwiseNet, ResidualNet, SENet

from ttmpd.errors import InputError
from ttmpd.models import create_model
from ttmpd.profiler import extract_units
from ttmpd.pruning import (
    PrunePlan,
    apply_plan,
    channel_groups,
    model_fingerprint,
    plan_from_removed,
    random_plan,
)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def seeded(net, seed=0):
    torch.manual_seed(seed)
    for m in net.modules():  # non-trivial BN statistics so BN pruning is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("net_cls", [ResidualNet, DepthwiseNet, ConcatNet, SENet])
def test_pruned_tiny_models_run_with_same_output_shape(net_cls, x16):
    net = seeded(net_cls())
    groups = channel_groups(net, x16)
    removed = {g.id: range(0, g.channels, 2) for g in groups if g.prunable}
    plan = plan_from_removed(groups, removed, model=net)
    pruned = apply_plan(net, x16, plan)
    assert pruned is not net and pruned(x16).shape == net(x16).shape
    assert n_params(pruned) < n_params(net)
    # channel counts follow the plan; the original is untouched
    after = {g.id: g.channels for g in channel_groups(pruned, x16)}
    for gid, keep in plan.keep.items():
        assert after[gid] == len(keep)
    assert model_fingerprint(net) == plan.fingerprint


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_zoo_models_prune_and_params_drop(name, x32):
    model = create_model(name).eval()
    plan = random_plan(model, x32, None, 0.5, seed=3)
    pruned = apply_plan(model, x32, plan)
    assert pruned(x32).shape == model(x32).shape
    assert n_params(pruned) < 0.6 * n_params(model)


def test_removing_dead_channels_preserves_the_function(x16):
    """Channels with no effect on the output can be removed without changing it."""
    net = seeded(ConcatNet())
    with torch.no_grad():  # dead channels: a's channel 5 and b's channel 2 output relu(0)=0
        net.a.weight[5] = 0
        net.a.bias[5] = 0
        net.b.weight[2] = 0
        net.b.bias[2] = 0
    groups = channel_groups(net, x16)
    pruned = apply_plan(net, x16, plan_from_removed(groups, {"a": [5], "b": [2]}, model=net))
    assert pruned.fc.in_features == 10 * 64
    torch.testing.assert_close(pruned(x16), net(x16))

    res = seeded(ResidualNet())
    with torch.no_grad():  # residual stream channel 3 read by nobody: conv1 in, fc in
        res.conv1.weight[:, 3] = 0
        res.fc.weight[:, 3] = 0
    groups = channel_groups(res, x16)
    pruned = apply_plan(res, x16, plan_from_removed(groups, {"stem.0": [3]}, model=res))
    assert pruned.conv2.out_channels == 15 and pruned.bn2.num_features == 15
    torch.testing.assert_close(pruned(x16), res(x16))


def test_plan_json_round_trip_and_reapplication_identical(tmp_path, x32):
    model = create_model("resnet20").eval()
    original = copy.deepcopy(model)
    plan = random_plan(model, x32, None, 0.4, seed=1, round_to=4)
    path = plan.to_json(tmp_path / "plans" / "p.json")
    data = json.loads(path.read_text())
    assert data["format"] == "ttmpd.prune_plan" and data["schema_version"] == 1
    assert data["fingerprint"][0] == ["conv1", [16, 3, 3, 3]]
    loaded = PrunePlan.from_json(path)
    assert loaded == plan
    first = apply_plan(model, x32, plan)
    second = apply_plan(copy.deepcopy(original), x32, loaded)
    s1, s2 = first.state_dict(), second.state_dict()
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(first(x32), second(x32))
    # the source model is unchanged by a non-inplace application
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())


def test_inplace_modifies_the_model(x16):
    net = seeded(ResidualNet())
    groups = channel_groups(net, x16)
    plan = plan_from_removed(groups, {"conv1": [0, 1]}, model=net)
    out = apply_plan(net, x16, plan, inplace=True)
    assert out is net and net.conv1.out_channels == 14


def test_unit_names_match_module_paths_after_pruning(x32):
    model = create_model("resnet20").eval()
    pruned = apply_plan(model, x32, random_plan(model, x32, None, 0.5, seed=0))
    before = extract_units(model, x32)
    after = extract_units(pruned, x32)
    assert [u.name for u in after.units] == [u.name for u in before.units]
    modules = dict(pruned.named_modules())
    for unit in after.units:
        if unit.config.op == "conv":
            assert modules[unit.name].out_channels == unit.config.out_channels
    assert any(
        a.config.out_channels < b.config.out_channels
        for a, b in zip(after.units, before.units, strict=True)
    )


# -- bad plans ---------------------------------------------------------------------------
@pytest.fixture
def net_and_plan(x16):
    net = seeded(ResidualNet())
    groups = channel_groups(net, x16)
    return net, groups, plan_from_removed(groups, {"conv1": [0]}, model=net)


def replace(plan, **changes):
    fields = dict(keep=plan.keep, channels=plan.channels, fingerprint=plan.fingerprint, metadata={})
    fields.update(changes)
    return PrunePlan(**fields)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"keep": {"conv1": (0, 16)}}, "index 16 is out of range for 16 channels"),
        ({"keep": {"conv1": (-1, 2)}}, "index -1 is out of range"),
        ({"keep": {"conv1": (1, 1, 2)}}, "channel 1 is listed twice"),
        ({"keep": {"conv1": ()}}, "keeps 0 channels"),
        ({"keep": {"conv1": (0.5,)}}, "must be ints"),
        ({"channels": {"conv9": 16}}, "needs both"),
    ],
)
def test_bad_plan_contents_raise(net_and_plan, changes, message):
    _, _, plan = net_and_plan
    with pytest.raises(InputError, match=message):
        replace(plan, **changes)


def test_bad_plans_against_the_model_raise(net_and_plan, x16):
    net, _, plan = net_and_plan
    unknown = replace(plan, keep={"conv9": (0,)}, channels={"conv9": 16})
    with pytest.raises(InputError, match=r"unknown group id 'conv9'.*conv1"):
        apply_plan(net, x16, unknown)
    with pytest.raises(InputError, match="not prunable"):
        apply_plan(net, x16, replace(plan, keep={"fc": (0, 1)}, channels={"fc": 10}))
    wrong_count = replace(plan, keep={"conv1": (0,)}, channels={"conv1": 12})
    with pytest.raises(InputError, match="12 channels but the model's group has 16"):
        apply_plan(net, x16, wrong_count)
    other = ResidualNet(c=8).eval()
    with pytest.raises(InputError, match=r"another model: stem.0 has weight shape \(8, 3, 3, 3\)"):
        apply_plan(other, x16, plan)
    pruned = apply_plan(net, x16, plan)
    with pytest.raises(InputError, match="unpruned model"):
        apply_plan(pruned, x16, plan)  # applying twice is a fingerprint mismatch
    with pytest.raises(InputError, match="PrunePlan"):
        apply_plan(net, x16, {"conv1": [0]})


def test_plan_from_removed_rejects_bad_requests(net_and_plan):
    _, groups, _ = net_and_plan
    with pytest.raises(InputError, match="unknown group id"):
        plan_from_removed(groups, {"nope": [0]})
    with pytest.raises(InputError, match="out of range"):
        plan_from_removed(groups, {"conv1": [16]})
    with pytest.raises(InputError, match="twice"):
        plan_from_removed(groups, {"conv1": [3, 3]})
    with pytest.raises(InputError, match="not prunable"):
        plan_from_removed(groups, {"fc": [0]})
    with pytest.raises(InputError, match="keep >= 1"):
        plan_from_removed(groups, {"conv1": range(16)})
    assert plan_from_removed(groups, {"conv1": [2]}).fingerprint == ()


def test_bad_plan_files_raise(tmp_path, net_and_plan):
    _, _, plan = net_and_plan
    path = plan.to_json(tmp_path / "p.json")
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"schema version 99.*reads version 1"):
        PrunePlan.from_json(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        PrunePlan.from_json(path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="not a ttmpd prune plan"):
        PrunePlan.from_json(path)
    with pytest.raises(InputError, match="cannot read"):
        PrunePlan.from_json(tmp_path / "missing.json")
    with pytest.raises(InputError, match="plain JSON"):
        replace(plan, metadata={"x": object()})


def test_pruned_model_checkpoint_round_trip(tmp_path, x32):
    from ttmpd.models import load_checkpoint, save_checkpoint

    model = create_model("resnet20").eval()
    plan = random_plan(model, x32, None, 0.5, seed=2)
    pruned = apply_plan(model, x32, plan)
    path = save_checkpoint(
        tmp_path / "pruned.pt", pruned, input_shape=(3, 32, 32), metadata=plan.to_dict()
    )
    loaded = load_checkpoint(path)
    assert loaded.arch is None
    assert torch.equal(loaded.model(x32), pruned(x32))
    assert PrunePlan.from_dict(loaded.metadata) == plan
