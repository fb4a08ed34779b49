"""The zoo's ViT for 28x28 digits: layout, attention, and what pruning and pricing see."""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch

from ttmpd.errors import InputError
from ttmpd.models import create_model
from ttmpd.models.vit import sincos_positions
from ttmpd.profiler import extract_units
from ttmpd.pruning import GroupOptions, apply_plan, channel_groups, plan_from_removed


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("vit_mnist", in_channels=1).eval()
    with torch.no_grad():  # zero biases and tiny weights make heads alike: make them distinct
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_layout_is_49_patches_and_a_class_token(vit):
    block = vit.blocks[0]
    assert vit.pos_embed.shape == (1, 50, 64) and len(vit.blocks) == 4
    assert (block.attn.num_heads, block.attn.head_dim, block.fc1.out_features) == (4, 16, 128)
    assert vit.patch_embed.kernel_size == vit.patch_embed.stride == (4, 4)
    assert vit.patch_embed.in_channels == 1 and vit.head.out_features == 10


def test_attention_is_softmax_of_scaled_logits(vit):
    """The fused call against attention written out (an independent computation)."""
    attn = vit.blocks[1].attn
    t = torch.randn(2, 50, 64, generator=torch.Generator().manual_seed(1))
    q, k, v = attn.qkv(t).split(64, dim=-1)

    def heads(z):
        return z.reshape(2, 50, 4, 16).transpose(1, 2)

    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(16), dim=-1)
    want = attn.proj((weights @ heads(v)).transpose(1, 2).reshape(2, 50, 64))
    with torch.no_grad():
        torch.testing.assert_close(attn(t), want, atol=1e-5, rtol=1e-4)


def test_the_prediction_reads_the_class_token(vit, x):
    """The logits are the head applied to the final norm's token 0 (not a token mean)."""
    captured = {}
    handle = vit.norm.register_forward_hook(lambda m, i, o: captured.update(out=o))
    with torch.no_grad():
        logits = vit(x)
        handle.remove()
        torch.testing.assert_close(logits, vit.head(captured["out"][:, 0]))
        assert not torch.allclose(logits, vit.head(captured["out"].mean(dim=1)), atol=1e-3)


def test_positions_start_as_a_2d_sine_cosine_table():
    table = sincos_positions(7, 64)
    assert table.shape == (49, 64)
    r, c = 2, 5  # patch 2 * 7 + 5
    for i in (0, 3, 15):
        w = 10000 ** (-i / 16)
        want = (math.sin(r * w), math.cos(r * w), math.sin(c * w), math.cos(c * w))
        got = tuple(float(table[r * 7 + c, 16 * part + i]) for part in range(4))
        assert got == pytest.approx(want, abs=1e-6)
    model = create_model("vit_mnist", in_channels=1)
    assert torch.equal(model.pos_embed[0, 1:].detach(), table)  # the class token has none
    assert torch.count_nonzero(model.pos_embed[0, 0]) == 0


def test_img_size_must_be_whole_patches():
    with pytest.raises(InputError, match="img_size 30 must be a multiple of patch_size 4"):
        create_model("vit_mnist", img_size=30)


def test_heads_and_mlp_widths_are_prunable_groups(vit, x):
    groups = {g.id: g for g in channel_groups(vit, x)}
    prunable = sorted(gid for gid, g in groups.items() if g.prunable)
    assert prunable == [f"blocks.{b}.{n}" for b in range(4) for n in ("attn#heads", "fc1")]
    assert groups["blocks.2.attn#heads"].channels == 4 and groups["blocks.2.fc1"].channels == 128
    assert "embedding" in groups["patch_embed"].reason  # opt in, GroupOptions(embedding=True)
    opted = channel_groups(vit, x, options=GroupOptions(head_dims=True, embedding=True))
    assert {g.id for g in opted if g.prunable} >= {"patch_embed", "blocks.0.attn#head_dims"}


def test_pruning_a_head_equals_zeroing_its_output(vit, x):
    groups = channel_groups(vit, x)
    plan = plan_from_removed(groups, {"blocks.1.attn#heads": [2]}, model=vit)
    pruned = apply_plan(vit, x, plan)
    attn = pruned.blocks[1].attn
    assert (attn.num_heads, attn.qkv.out_features, attn.proj.in_features) == (3, 144, 48)
    masked, wrong = copy.deepcopy(vit), copy.deepcopy(vit)
    with torch.no_grad():
        masked.blocks[1].attn.proj.weight[:, 32:48] = 0  # head 2's columns of proj
        wrong.blocks[1].attn.proj.weight[:, 0:16] = 0
        torch.testing.assert_close(pruned(x), masked(x), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(pruned(x), wrong(x), atol=1e-4)


def test_every_op_is_a_priced_unit(vit, x):
    units = extract_units(vit, x, "none")
    assert not units.uncovered
    ops = Counter(u.config.op for u in units.units)
    assert ops == {
        "conv": 1, "cat": 1, "add": 9, "layernorm": 9, "linear": 17, "act": 4, "sdpa": 4
    }  # fmt: skip
    sdpa = next(u.config for u in units.units if u.config.op == "sdpa")
    assert (sdpa.heads, sdpa.in_channels, sdpa.in_h, sdpa.in_w) == (4, 64, 50, 50)
