"""Channel groups of zoo architectures with layouts torch-pruning alone gets wrong:
ShuffleNetV2's channel shuffle, RegNet's grouped convs, Swin's per-head position bias."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from ttmpd.pruning import ChannelMasker, apply_plan, channel_groups, plan_from_removed, random_plan

pytestmark = [
    pytest.mark.zoo,
    pytest.mark.skipif(
        importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("timm") is None,
        reason="torchvision/timm not installed (pip install 'ttmpd[zoo]')",
    ),
]
X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _load(spec: str) -> torch.nn.Module:
    from ttmpd.models import load_model

    torch.manual_seed(0)
    return load_model(spec).eval()


def _pruned_equals_masked(model, groups, plan) -> None:
    pruned = apply_plan(model, X, plan)
    masked = ChannelMasker(model, groups).masked({g: plan.removed(g) for g in plan.keep})
    with torch.no_grad():
        torch.testing.assert_close(pruned(X), masked(X), atol=1e-4, rtol=1e-3)


def test_shufflenet_groups_say_which_pass_the_shuffle():
    model = _load("torchvision:shufflenet_v2_x0_5")
    groups = channel_groups(model, X)
    closed = [g for g in groups if not g.prunable]
    assert closed[-1].id == "fc"
    shuffled = {g.id for g in closed if "channel shuffle" in g.reason}
    assert shuffled == {f"stage{s}.0.branch{b}" for s in (2, 3, 4) for b in ("1.2", "2.5")}
    assert {g.id for g in closed} == shuffled | {"fc"}
    # the branches' inner widths and the stem stay prunable, and prune correctly
    assert {"conv1.0", "stage2.1.branch2.0", "stage4.3.branch2.0", "conv5.0"} <= {
        g.id for g in groups if g.prunable
    }
    _pruned_equals_masked(model, groups, random_plan(model, X, groups, 0.4, seed=0))


def test_regnet_grouped_convs_prune_whole_offsets():
    model = _load("torchvision:regnet_x_400mf")
    groups = channel_groups(model, X)
    assert [g.id for g in groups if not g.prunable] == ["fc"]
    grouped = [g for g in groups if g.unit == "conv_groups"]
    assert len(grouped) == 2 * 22  # each block's 3x3 grouped conv: its input and output
    path = "trunk_output.block2.block2-0.f.b.0"  # 64 channels in 4 conv groups of 16
    conv = model.get_submodule(path)
    owner = next(g for g in grouped if (path, "out") in g.members)
    assert owner.id == path and owner.channels == 16 == conv.out_channels // conv.groups
    plan = random_plan(model, X, groups, 0.4, seed=1)
    pruned = apply_plan(model, X, plan)
    block = pruned.get_submodule(path)
    assert block.groups == 4 and block.out_channels == 4 * len(plan.keep[path])
    _pruned_equals_masked(model, groups, plan)


def test_swin_heads_prune_their_position_bias_columns():
    from ttmpd.models._sources import import_timm

    import_timm()
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    model = SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16,
                            depths=(1, 1), num_heads=(2, 4), num_classes=5).eval()  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    groups = channel_groups(model, X)
    heads = {g.id: g for g in groups if g.unit == "heads"}
    assert [g.channels for g in heads.values()] == [2, 4] and all(
        g.prunable for g in heads.values()
    )
    gid = "layers.1.blocks.0.attn#heads"
    plan = plan_from_removed(groups, {gid: [0, 2]}, model=model)
    pruned = apply_plan(model, X, plan)
    attn = pruned.layers[1].blocks[0].attn
    table = model.layers[1].blocks[0].attn.relative_position_bias_table
    assert attn.num_heads == 2
    torch.testing.assert_close(attn.relative_position_bias_table, table[:, [1, 3]])
    reference = copy.deepcopy(model)
    qkv = reference.layers[1].blocks[0].attn.qkv
    with torch.no_grad():
        for part in range(3):  # dim 32 = 4 heads of 8
            for head in (0, 2):
                start = part * 32 + head * 8
                qkv.weight[start : start + 8] = 0
                qkv.bias[start : start + 8] = 0
        torch.testing.assert_close(pruned(X), reference(X), atol=1e-5, rtol=1e-4)


def test_efficientnet_groups_survive_its_deep_graph():
    """Trial pruning deep-copies the dependency graph: EfficientNet-B0's needs more than
    Python's default recursion limit, which is raised for the copy and restored after."""
    import sys

    limit = sys.getrecursionlimit()
    model = _load("torchvision:efficientnet_b0")
    groups = channel_groups(model, X)
    assert sys.getrecursionlimit() == limit
    prunable = [g for g in groups if g.prunable]
    assert len(prunable) >= 30
    _pruned_equals_masked(model, groups, random_plan(model, X, groups, 0.3, seed=0))
