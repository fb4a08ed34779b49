"""Transformer units: token layout, attention, and their grid."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from transformer_nets import TRANSFORMER_UNITS, TinyBert, TinyViT

from ttmpd.lut import configs_frame
from ttmpd.profiler import (
    ATTENTION_PARTS,
    INPUT,
    GridConfig,
    UnitConfig,
    build_unit,
    extract_units,
    split_fusion,
    unit_variants,
)


def _ops(extraction) -> Counter:
    return Counter(u.config.op for u in extraction.units)


@pytest.mark.parametrize("unit", TRANSFORMER_UNITS, ids=lambda u: f"{u.op}-{u.layout}")
def test_every_transformer_unit_builds_and_runs(unit):
    module, inputs = build_unit(unit)
    with torch.inference_mode():
        out = module(*inputs)
    assert out.numel() == unit.output_elements
    assert sum(t.numel() for t in inputs) == unit.input_elements


def test_derived_columns_agree_with_the_configs():
    frame = configs_frame(TRANSFORMER_UNITS)
    for unit, row in zip(TRANSFORMER_UNITS, frame.to_dict("records"), strict=True):
        assert row["key"] == unit.key
        assert (row["macs"], row["params"]) == (unit.macs, unit.params)
        assert (row["input_elements"], row["output_elements"]) == (
            unit.input_elements,
            unit.output_elements,
        )


def test_keys_of_cnn_units_do_not_name_the_new_fields():
    conv = UnitConfig("conv", 1, 3, 8, 8, 8, 8, 8, 3, 3)
    assert "layout" not in conv.key and "heads" not in conv.key
    tokens = conv.replace(op="linear", kernel_h=1, kernel_w=1, layout="nhwc")
    assert tokens.key.endswith("|layout=nhwc")


def test_vit_units_read_tokens_as_tokens():
    vit = TinyViT(image=16, patch=4, dim=32, heads=2, mlp=64, depth=2).eval()
    e = extract_units(vit, torch.randn(2, 3, 16, 16))
    assert not e.uncovered
    assert _ops(e) == {
        "conv": 1, "cat": 1, "add": 5, "layernorm": 5, "linear": 9, "sdpa": 2, "act": 2,
    }  # fmt: skip
    tokens = [u.config for u in e.units if u.config.layout == "nhwc"]
    assert all(c.batch == 2 and c.in_h == 17 and c.in_w == 1 for c in tokens)
    gelu = next(u.config for u in e.units if u.config.op == "act")
    assert (gelu.in_channels, gelu.act) == (64, "gelu")  # the MLP width, not 17 tokens
    qkv = next(u.config for u in e.units if u.name == "blocks.0.attn.qkv")
    assert (qkv.in_channels, qkv.out_channels, qkv.macs) == (32, 96, 2 * 17 * 32 * 96)
    sdpa = next(u for u in e.units if u.config.op == "sdpa")
    assert (sdpa.config.heads, sdpa.config.in_channels, sdpa.config.in_h) == (2, 32, 17)
    assert e.units[sdpa.inputs[0]].name == "blocks.0.attn.qkv"
    head = e.units[-1]
    assert head.config.layout == "nchw" and head.fixed_out and head.config.batch == 2


def test_attention_runs_as_its_parts_where_the_backend_splits_it():
    vit = TinyViT(depth=1).eval()
    e = extract_units(vit, torch.randn(1, 3, 16, 16), "none" + ATTENTION_PARTS)
    assert "sdpa" not in _ops(e) and _ops(e)["matmul"] == 2 and _ops(e)["softmax"] == 1
    scores, softmax, weighted = (u for u in e.units if u.config.op in ("matmul", "softmax"))
    assert (scores.config.in_channels, scores.config.out_channels) == (32, 2 * 17)
    assert (weighted.config.in_channels, weighted.config.out_channels) == (2 * 17, 32)
    assert softmax.inputs == (scores.index,) and softmax.index in weighted.inputs
    assert split_fusion("conv-bn" + ATTENTION_PARTS) == ("conv-bn", True)


def test_text_encoder_prices_embeddings_and_token_mean():
    bert = TinyBert(vocab=100, tokens=16, dim=32).eval()
    e = extract_units(bert, torch.randint(0, 100, (2, 16)))
    assert not e.uncovered
    embed = next(u for u in e.units if u.config.op == "embedding")
    assert (embed.config.in_channels, embed.config.out_channels, embed.config.in_h) == (100, 32, 16)
    assert embed.fixed_in and embed.fixed_out  # ids in; the residual width is the output
    pool = next(u.config for u in e.units if u.config.op == "gap")
    assert pool.layout == "nhwc" and (pool.in_channels, pool.in_h) == (32, 16)


def test_channels_last_gelu_reads_channels_from_the_last_dim():
    class NHWCBlock(nn.Module):  # ConvNeXt: depthwise conv, then an MLP on (B, H, W, C)
        def __init__(self) -> None:
            super().__init__()
            self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
            self.norm, self.fc1 = nn.LayerNorm(8), nn.Linear(8, 32)
            self.act, self.fc2 = nn.GELU(), nn.Linear(32, 8)

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.fc2(self.act(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
            return x + y

    e = extract_units(NHWCBlock().eval(), torch.randn(1, 8, 6, 6))
    by_op = {u.config.op: u.config for u in e.units}
    assert by_op["act"].layout == "nhwc" and by_op["act"].in_channels == 32
    assert (by_op["act"].in_h, by_op["act"].in_w) == (6, 6)
    assert by_op["layernorm"].in_channels == 8 and by_op["add"].layout == "nchw"


def test_grid_varies_widths_and_heads_never_tokens():
    vit = TinyViT(dim=64, heads=4, mlp=128, depth=1).eval()
    units = extract_units(vit, torch.randn(1, 3, 16, 16)).units
    for unit in units:
        variants = unit_variants(unit, GridConfig())
        assert {(v.batch, v.in_h, v.in_w) for v in variants} == {
            (unit.config.batch, unit.config.in_h, unit.config.in_w)
        }
    sdpa = next(u for u in units if u.config.op == "sdpa")
    heads = sorted(v.heads for v in unit_variants(sdpa, GridConfig()))
    assert heads == [1, 2, 3, 4]
    assert all(v.in_channels == 16 * v.heads for v in unit_variants(sdpa, GridConfig()))
    gelu = next(u for u in units if u.config.op == "act")
    widths = {v.in_channels for v in unit_variants(gelu, GridConfig())}
    assert max(widths) == 128 and len(widths) > 2


def test_masked_attention_is_reported_uncovered():
    class Causal(nn.Module):
        def forward(self, q):
            return nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)

    e = extract_units(Causal(), torch.randn(1, 2, 8, 16))
    assert [u.aten for u in e.uncovered] == ["scaled_dot_product_attention"]


class _LayerFastPath(nn.Module):
    """``nn.TransformerEncoderLayer``'s whole-layer fast path, called directly."""

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.layer
        return torch._transformer_encoder_layer_fwd(
            x, m.self_attn.embed_dim, m.self_attn.num_heads, m.self_attn.in_proj_weight,
            m.self_attn.in_proj_bias, m.self_attn.out_proj.weight, m.self_attn.out_proj.bias,
            m.activation_relu_or_gelu == 2, m.norm_first, m.norm1.eps, m.norm1.weight,
            m.norm1.bias, m.norm2.weight, m.norm2.bias, m.linear1.weight, m.linear1.bias,
            m.linear2.weight, m.linear2.bias,
        )  # fmt: skip


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("fast_path", ["attention", "layer"])
def test_torch_transformer_fast_paths_are_priced_as_their_units(norm_first, fast_path):
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first)
    if fast_path == "layer":
        encoder = nn.Sequential(_LayerFastPath(layer), _LayerFastPath(layer)).eval()
    else:
        encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 12, 32)
    fast_op = {
        "attention": "_native_multi_head_attention",
        "layer": "_transformer_encoder_layer_fwd",
    }
    for parts in (False, True):
        e = extract_units(encoder, x, "none" + (ATTENTION_PARTS if parts else ""))
        assert not e.uncovered and fast_op[fast_path] in {u.aten for u in e.units}
        attention = {"matmul": 4, "softmax": 2} if parts else {"sdpa": 2}
        assert _ops(e) == {"linear": 8, "add": 4, "layernorm": 4, "act": 2, **attention}
        qkv = e.units[1 if norm_first else 0].config
        assert (qkv.op, qkv.in_channels, qkv.out_channels, qkv.in_h) == ("linear", 32, 96, 12)
        assert e.units[-1].config.op == ("add" if norm_first else "layernorm")
        residual = next(u for u in e.units if u.config.op == "add")
        assert INPUT in residual.inputs and len(residual.inputs) == 2


def test_views_are_free_and_copies_are_priced():
    class Shuffle(nn.Module):  # ShuffleNet's channel shuffle: a copy; then a plain view
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 12, 1), nn.Conv2d(12, 4, 1)

        def forward(self, x):
            x = self.conv1(x)
            b, c, h, w = x.shape
            y = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
            return self.conv2(torch.relu(y)).flatten(1)

    e = extract_units(Shuffle(), torch.randn(1, 3, 4, 4))
    assert not e.uncovered and [u.config.op for u in e.units] == ["conv", "copy", "act", "conv"]
    copy = e.units[1]
    assert (copy.config.groups, copy.config.in_channels, copy.config.in_h) == (2, 12, 4)
    assert {v.in_channels for v in unit_variants(copy, GridConfig(channel_step=2))} == {
        2, 4, 6, 8, 10, 12
    }  # fmt: skip
    assert dict(e.free_ops) == {"flatten": 1, "transpose": 1, "view": 2}
