import pytest
import torch
from nets import ConcatNet, DepthwiseNet, ResidualNet, SENet

from ttmpd.errors import InputError
from ttmpd.models import create_model
from ttmpd.pruning import ChannelGroup, channel_groups


def by_id(groups):
    return {g.id: g for g in groups}


def test_residual_stream_is_one_group(x16):
    groups = by_id(channel_groups(ResidualNet().eval(), x16))
    assert list(groups) == ["stem.0", "conv1", "fc"]
    stream = groups["stem.0"]
    assert set(stream.members) == {
        ("stem.0", "out"), ("stem.1", "out"), ("conv1", "in"), ("conv2", "out"),
        ("bn2", "out"), ("fc", "in"),
    }  # fmt: skip
    assert stream.channels == 16 and stream.prunable
    inner = groups["conv1"]
    assert set(inner.members) == {("conv1", "out"), ("bn1", "out"), ("conv2", "in")}
    assert inner.prunable


def test_classifier_output_never_prunable(x16):
    for net in (ResidualNet(), DepthwiseNet(), ConcatNet()):
        groups = channel_groups(net.eval(), x16)
        head = groups[-1]
        assert not head.prunable and "output" in head.reason
        assert head.members == ((head.id, "out"),)
    # no group prunes the image channels: no "in" member is a first conv
    assert all(("stem.0", "in") not in g.members for g in channel_groups(ResidualNet(), x16))


def test_depthwise_conv_couples_both_sides(x16):
    groups = by_id(channel_groups(DepthwiseNet().eval(), x16))
    assert set(groups) == {"stem", "expand.0", "head"}
    assert set(groups["expand.0"].members) == {
        ("expand.0", "out"), ("expand.1", "out"), ("dw.0", "out"), ("dw.0", "in"),
        ("dw.1", "out"), ("project.0", "in"),
    }  # fmt: skip
    # the stem feeds the residual add with the projection: one group
    assert set(groups["stem"].members) == {
        ("stem", "out"), ("expand.0", "in"), ("project.0", "out"), ("project.1", "out"),
        ("head", "in"),
    }  # fmt: skip


def test_concat_operands_are_separate_groups_with_offsets(x16):
    groups = by_id(channel_groups(ConcatNet().eval(), x16))
    assert set(groups["a"].members) == {("a", "out"), ("fc", "in")}
    assert set(groups["b"].members) == {("b", "out"), ("fc", "in")}
    assert groups["a"].channels == 8 and groups["b"].channels == 4
    assert groups["a"].prunable and groups["b"].prunable
    # channel i of b is features (8 + i) * 64 ... of the flattened 12x8x8 tensor
    fc_b = next(s for s in groups["b"].slices if s.path == "fc")
    assert sorted(fc_b.indices) == list(range(8 * 64, 12 * 64))
    pairs = zip(fc_b.indices, fc_b.root_indices, strict=True)
    assert all(idx // 64 - 8 == root for idx, root in pairs)


def test_squeeze_excitation_output_channels_fixed(x16):
    groups = by_id(channel_groups(SENet().eval(), x16))
    assert set(groups["conv"].members) == {("conv", "out"), ("fc1", "in"), ("fc2", "out")}
    assert not groups["conv"].prunable  # x * se is the model output
    assert groups["fc1"].prunable
    assert set(groups["fc1"].members) == {("fc1", "out"), ("fc2", "in")}


def test_resnet20_stages_merge_into_residual_streams(x32):
    groups = by_id(channel_groups(create_model("resnet20"), x32))
    assert len(groups) == 3 + 9 + 1  # 3 residual streams, 9 inner convs, classifier
    stage1 = {p for p, s in groups["conv1"].members if s == "out"}
    assert {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= stage1
    stage2 = {p for p, s in groups["layer2.0.conv2"].members if s == "out"}
    assert {"layer2.0.downsample.0", "layer2.1.conv2", "layer2.2.conv2"} <= stage2
    assert ("layer2.0.downsample.0", "in") in groups["conv1"].members
    assert [g.id for g in groups.values() if not g.prunable] == ["fc"]


def test_mobilenet_v2_groups(x32):
    model = create_model("mobilenet_v2")
    groups = channel_groups(model, x32)
    depthwise = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1
    ]
    for name in depthwise:  # each depthwise conv lies in exactly one group, on both sides
        owners = [g for g in groups if (name, "out") in g.members]
        assert len(owners) == 1 and (name, "in") in owners[0].members
    assert [g.prunable for g in groups].count(False) == 1  # the classifier
    # the groups partition every conv's output channels
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            owners = [g for g in groups if (name, "out") in g.members]
            assert len(owners) == 1 and owners[0].channels == m.out_channels


def test_ignored_layers_make_groups_unprunable(x16):
    net = ResidualNet().eval()
    groups = by_id(channel_groups(net, x16, ignored=["conv2"]))
    assert not groups["stem.0"].prunable and "conv2" in groups["stem.0"].reason
    assert groups["conv1"].prunable
    groups = by_id(channel_groups(net, x16, ignored=[net.conv1]))
    assert not groups["conv1"].prunable
    with pytest.raises(InputError, match="not a module path"):
        channel_groups(net, x16, ignored=["nope"])


def test_analysis_leaves_model_untouched(x16):
    net = ResidualNet().train()
    for p in net.fc.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    channel_groups(net, x16)
    assert net.training and not net.fc.weight.requires_grad and net.conv1.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_group_record_is_validated():
    with pytest.raises(InputError, match="channels"):
        ChannelGroup(id="a", channels=0, members=(), prunable=True)
    with pytest.raises(InputError, match="member"):
        ChannelGroup(id="a", channels=2, members=(("a", "sideways"),), prunable=True)
    with pytest.raises(InputError, match="reason"):
        ChannelGroup(id="a", channels=2, members=(), prunable=False)


def test_bad_example_input():
    with pytest.raises(InputError, match="example_input"):
        channel_groups(ResidualNet(), "image")
    with pytest.raises(InputError, match="cannot trace"):
        channel_groups(ResidualNet(), torch.randn(1, 5, 16, 16))
