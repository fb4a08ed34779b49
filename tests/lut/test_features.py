"""Device-rule features: the rules come from probes of the device, and the tests check the
probes against what the libraries themselves do (ORT's optimised graph, PyTorch's ops)."""

import dataclasses
import os
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

from ttmpd.lut._features import (
    FEATURE_NAMES,
    block_macs,
    blocked_layout_mask,
    configs_frame,
    native_conv_mask,
    reorder_delta_ms,
    unit_features,
)
from ttmpd.profiler import UnitConfig, get_backend
from ttmpd.profiler.backends.fake import fake_conv_layout, fake_reorder_ms


def conv(c_in: int, c_out: int, groups: int = 1, hw: int = 8, k: int = 3) -> UnitConfig:
    return UnitConfig(
        op="conv", batch=1, in_channels=c_in, out_channels=c_out, in_h=hw, in_w=hw,
        out_h=hw, out_w=hw, kernel_h=k, kernel_w=k, pad_h=k // 2, pad_w=k // 2, groups=groups,
    )  # fmt: skip


def fake_rules(monkeypatch, block: int):
    monkeypatch.setenv("TTMPD_FAKE_BLOCK", str(block))
    return get_backend("fake").probe_rules()


# held-out counts: inside and far beyond the probed range
HELD_OUT = [(c_in, c_out) for c_in in (3, 7, 9, 12, 13, 17, 20, 22, 36, 37, 96, 100, 130, 257)
            for c_out in (5, 24, 40)]  # fmt: skip


@pytest.mark.parametrize("block", [8, 16])
def test_learned_rule_follows_the_fake_devices_block(monkeypatch, block):
    rules = fake_rules(monkeypatch, block)
    assert rules.blocked is not None and rules.blocked.block == block
    configs = [conv(i, o) for i, o in HELD_OUT] + [conv(c, c, groups=c) for c in (4, 6, 12, 98)]
    frame = configs_frame(configs)
    truth = [fake_conv_layout(c.in_channels, c.out_channels, c.groups, block) for c in configs]
    mask = blocked_layout_mask(frame, rules.blocked)
    assert mask.tolist() == [t.blocked for t in truth]
    padded = [
        conv(t.padded_in, t.padded_out, groups=c.groups if c.groups == 1 else t.padded_in).macs
        for c, t in zip(configs, truth, strict=True)
    ]
    assert np.allclose(block_macs(frame, rules.blocked)[mask], np.array(padded)[mask])


def test_rules_of_block_8_and_16_price_the_same_conv_differently(monkeypatch):
    frame = configs_frame([conv(20, 20)])  # c_in 20 pads to 24 with block 8, 32 with 16
    macs = {b: block_macs(frame, fake_rules(monkeypatch, b).blocked)[0] for b in (8, 16)}
    assert macs[8] == conv(24, 24).macs and macs[16] == conv(32, 32).macs


def test_no_blocked_rule_means_no_blocked_features(monkeypatch):
    rules = fake_rules(monkeypatch, 0)
    assert rules.blocked is None and rules.second_slope == ""
    f = unit_features(configs_frame([conv(16, 4), conv(20, 20)]), rules)
    assert (f[:, FEATURE_NAMES.index("blocked")] == 0).all()
    assert (
        f[:, FEATURE_NAMES.index("log_macs_block")] == f[:, FEATURE_NAMES.index("log_macs")]
    ).all()


def test_blocked_features_carry_the_padding(monkeypatch):
    rules = fake_rules(monkeypatch, 16)
    f = unit_features(configs_frame([conv(32, 17), conv(32, 32), conv(7, 32), conv(8, 32)]), rules)
    padded = f[:, FEATURE_NAMES.index("log_macs_block")]
    assert padded[0] == padded[1]  # 17 outputs cost like 32 in a 16-wide block
    assert padded[2] < padded[3]  # c_in below the block is read unpadded
    assert f[2, FEATURE_NAMES.index("in_unpadded")] == 1.0
    assert f[0, FEATURE_NAMES.index("in_unpadded")] == 1.0  # 32 is its own padding


def _ort_blocked(c_in: int, c_out: int, groups: int = 1) -> bool:
    """Does ONNX Runtime (all optimisations) run this conv alone as an NCHWc conv?"""
    import onnx

    from ttmpd.profiler import BackendConfig
    from ttmpd.profiler.backends.ort import export_onnx, ort_session

    net = nn.Conv2d(c_in, c_out, 3, padding=1, groups=groups).eval()
    model = export_onnx(net, (torch.randn(1, c_in, 8, 8),))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        ort_session(model, BackendConfig(threads=1), optimized_path=path)
        nodes = onnx.load(path).graph.node
    return any(n.domain == "com.microsoft.nchwc" and n.op_type == "Conv" for n in nodes)


@pytest.mark.ort
def test_probed_ort_rule_predicts_ort_on_held_out_counts():
    pytest.importorskip("onnxruntime")
    rules = get_backend("onnxruntime").probe_rules()
    if rules.blocked is None:
        assert not _ort_blocked(16, 16) and not _ort_blocked(32, 32)
        return
    cases = [(17, 32, 1), (18, 8, 1), (22, 22, 1), (9, 40, 1), (6, 6, 6), (12, 12, 12),
             (72, 16, 1), (74, 16, 1), (96, 40, 1), (150, 8, 1), (76, 76, 76),
             (90, 90, 90),
             # grouped: the probe sees 2 groups of equal counts in and out only
             (64, 64, 4), (96, 96, 3), (32, 48, 2), (48, 32, 2), (64, 64, 8), (72, 72, 2),
             (160, 160, 10)]  # fmt: skip
    frame = configs_frame([conv(i, o, g) for i, o, g in cases])
    predicted = blocked_layout_mask(frame, rules.blocked).tolist()
    assert predicted == [_ort_blocked(i, o, g) for i, o, g in cases]


def _torch_native(c: UnitConfig) -> bool:
    """Does eager PyTorch run this conv on its native path? (kineto profiler, independent
    of the probe's legacy profiler)."""
    from torch.profiler import ProfilerActivity, profile

    net = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_h, stride=c.stride_h,
                    padding=c.pad_h, groups=c.groups).eval()  # fmt: skip
    x = torch.randn(c.batch, c.in_channels, c.in_h, c.in_w)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        net(x)
    return any("slow_conv2d" in e.key for e in prof.key_averages())


def test_probed_torch_rule_predicts_torchs_conv_path_on_held_out_shapes():
    torch.set_num_threads(1)
    rules = get_backend("torch-cpu").probe_rules()
    cases = [conv(104, 8, hw=14), conv(105, 8, hw=14), conv(50, 16, hw=28, k=1),
             conv(3, 8, hw=28, k=7), conv(32, 32, groups=32, hw=7), conv(20, 40, hw=32),
             conv(8, 8, hw=56)]  # fmt: skip
    cases.append(cases[0].replace(batch=2))
    cases.append(conv(64, 64, hw=14, k=1).replace(stride_h=2, stride_w=2, out_h=7, out_w=7))
    mask = native_conv_mask(configs_frame(cases), rules.native, threads=1)
    assert mask.tolist() == [_torch_native(c) for c in cases]


def test_reorder_delta_charges_what_a_whole_model_reorders_minus_what_units_did_alone(
    monkeypatch,
):
    rule = fake_rules(monkeypatch, 16).blocked  # reorders priced as the fake device costs them
    assert rule.prices_reorders
    units = [conv(32, 16), conv(8, 16), conv(18, 16), conv(32, 32, groups=32),
             UnitConfig(op="act", batch=1, in_channels=16, out_channels=16, in_h=8, in_w=8,
                        out_h=8, out_w=8, act="relu")]  # fmt: skip
    delta = reorder_delta_ms(configs_frame(units), rule)
    r = {c: fake_reorder_ms(c * 64) for c in (8, 16, 18, 32)}  # 8x8 pixels
    assert delta == pytest.approx([
        -r[32] - r[16],  # blocked, reads blocked: a chain needs neither reorder
        +r[8] - r[16],  # blocked, reads plain: its input is reordered, its output is not
        +r[18],  # not blocked: its input leaves the blocked chain
        -r[32] - r[32],  # blocked depthwise
        0.0,  # not a conv
    ], rel=1e-3)  # fmt: skip
    # a device that runs grouped convs blocked (ONNX Runtime does, at whole blocks per group)
    grouped = dataclasses.replace(rule, grouped_multiple=16)
    pair = configs_frame([conv(32, 32, groups=2), conv(32, 48, groups=2)])
    assert reorder_delta_ms(pair, rule) == pytest.approx([r[32], r[32]], rel=1e-3)
    assert reorder_delta_ms(pair, grouped) == pytest.approx(
        [-r[32] - r[32], r[32]], rel=1e-3
    )  # 2 groups of 16 read and write blocks; 24 outputs per group is not blocked
    assert blocked_layout_mask(pair, grouped).tolist() == [True, False]
    unprobed = dataclasses.replace(rule, reorder_overhead_ms=0.0, reorder_ns_per_element=0.0)
    assert not reorder_delta_ms(configs_frame(units), unprobed).any()
    assert not reorder_delta_ms(configs_frame(units), None).any()
