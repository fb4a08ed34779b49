"""Unit extraction of zoo transformers (timm ViT/DeiT, ConvNeXt, torchvision ViT), built
without weights at small inputs."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import torch

from ttmpd.models import load_model
from ttmpd.profiler import ATTENTION_PARTS, extract_units

pytestmark = [
    pytest.mark.zoo,
    pytest.mark.skipif(
        importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("timm") is None,
        reason="torchvision/timm not installed (pip install 'ttmpd[zoo]')",
    ),
]

VIT = "timm:vit_tiny_patch16_224?img_size=32,patch_size=8,depth=2"


def _ops(e) -> Counter:
    return Counter(u.config.op for u in e.units)


@pytest.mark.parametrize("parts", [False, True], ids=["fused", "parts"])
def test_timm_vit_attention_blocks(parts):
    model, x = load_model(VIT).eval(), torch.randn(2, 3, 32, 32)
    e = extract_units(model, x, "none" + (ATTENTION_PARTS if parts else ""))
    assert not e.uncovered
    attention = {"matmul": 4, "softmax": 2} if parts else {"sdpa": 2}
    assert _ops(e) == {
        "conv": 1, "cat": 1, "add": 5, "layernorm": 5, "linear": 9, "act": 2, **attention
    }  # fmt: skip
    by_name = {u.name: u.config for u in e.units}
    qkv, fc1 = by_name["blocks.0.attn.qkv"], by_name["blocks.0.mlp.fc1"]
    assert (qkv.in_channels, qkv.out_channels, qkv.in_h, qkv.batch) == (192, 576, 17, 2)
    assert (fc1.out_channels, by_name["blocks.0.mlp.act"].in_channels) == (768, 768)
    cat = next(u.config for u in e.units if u.config.op == "cat")
    assert (cat.layout, cat.in_channels, cat.in_h) == ("nhwc", 192, 17)  # class token
    if not parts:
        sdpa = next(u.config for u in e.units if u.config.op == "sdpa")
        assert (sdpa.heads, sdpa.in_channels // sdpa.heads, sdpa.in_h, sdpa.in_w) == (3, 64, 17, 17)
    assert dict(e.free_ops).keys() <= {
        "dropout", "flatten", "permute", "reshape", "select", "transpose", "unbind"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        ("timm:deit_tiny_distilled_patch16_224?img_size=32,patch_size=8,depth=2", (1, 3, 32, 32)),
        ("timm:convnext_atto?conv_mlp=False", (1, 3, 64, 64)),
        ("torchvision:vit_b_16?image_size=32", (1, 3, 32, 32)),
    ],
)
def test_zoo_transformers_have_no_unpriced_op(spec, shape):
    e = extract_units(load_model(spec).eval(), torch.randn(*shape))
    assert not e.uncovered
    if "convnext" in spec:  # channels-last MLP: GELU on the 4x expanded last dim
        gelu = next(u.config for u in e.units if u.config.act == "gelu")
        assert gelu.layout == "nhwc" and gelu.in_channels == 4 * 40 and gelu.in_h == 16
