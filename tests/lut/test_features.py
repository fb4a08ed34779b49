import os
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

from ttmpd.lut._features import (
    FEATURE_NAMES,
    blocked_layout_mask,
    configs_frame,
    native_conv_mask,
    unit_features,
)
from ttmpd.profiler import UnitConfig


def conv(c_in: int, c_out: int, groups: int = 1, hw: int = 8) -> UnitConfig:
    return UnitConfig(
        op="conv", batch=1, in_channels=c_in, out_channels=c_out, in_h=hw, in_w=hw,
        out_h=hw, out_w=hw, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1, groups=groups,
    )  # fmt: skip


def column(configs: list[UnitConfig], name: str) -> np.ndarray:
    return unit_features(configs_frame(configs))[:, FEATURE_NAMES.index(name)]


@pytest.mark.parametrize(
    ("config", "blocked"),
    [
        (conv(3, 17), True),  # narrow input read as NCHW, any output count
        (conv(13, 32), True),
        (conv(16, 7), True),
        (conv(20, 32), True),  # multiple of 4
        (conv(17, 32), False),
        (conv(22, 32), False),
        (conv(12, 12, groups=12), True),  # depthwise, multiple of 4
        (conv(6, 6, groups=6), False),
        (conv(16, 16, groups=4), False),  # other grouped convs
        (UnitConfig(op="act", batch=1, in_channels=16, out_channels=16, act="relu"), False),
    ],
)
def test_blocked_layout_rule(config, blocked):
    assert blocked_layout_mask(configs_frame([config]))[0] == blocked
    assert column([config], "blocked")[0] == float(blocked)


def test_block_padding_prices_output_counts_in_steps_of_16():
    padded = column([conv(32, 17), conv(32, 32), conv(17, 32)], "log_macs_block16")
    assert padded[0] == padded[1]  # 17 output channels cost like 32 in a blocked kernel
    assert padded[2] == column([conv(17, 32)], "log_macs")[0]  # not blocked: no padding
    narrow = column([conv(7, 32), conv(8, 32)], "log_macs_block16")
    assert narrow[0] < narrow[1]  # inputs <= 16 are read unpadded


def _ort_blocked(c_in: int, c_out: int, groups: int = 1) -> bool:
    """Does ONNX Runtime (all optimisations) run this conv as an NCHWc conv on this host?"""
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


def test_rule_matches_onnxruntime_on_this_host():
    pytest.importorskip("onnxruntime")
    if not _ort_blocked(13, 32):
        pytest.skip("this host's NCHWc block is not 16 channels (no AVX-512), or no NCHWc")
    cases = [(17, 32, 1), (18, 8, 1), (20, 32, 1), (22, 22, 1), (36, 40, 1), (16, 9, 1),
             (6, 6, 6), (12, 12, 12)]  # fmt: skip
    for c_in, c_out, groups in cases:
        expected = blocked_layout_mask(configs_frame([conv(c_in, c_out, groups)]))[0]
        assert _ort_blocked(c_in, c_out, groups) == expected, (c_in, c_out, groups)


def test_native_conv_mask_follows_pytorchs_conv_path_rule():
    """Cases checked with the profiler on torch 2.13 (1 thread): slow_conv2d vs oneDNN."""

    def conv(c, hw, k=3, stride=1, groups=1, batch=1):
        out = hw // stride
        return UnitConfig(op="conv", batch=batch, in_channels=c,
                          out_channels=64 if groups == 1 else c, in_h=hw, in_w=hw, out_h=out,
                          out_w=out, kernel_h=k, kernel_w=k, stride_h=stride, stride_w=stride,
                          pad_h=k // 2, pad_w=k // 2, groups=groups)  # fmt: skip

    cases = {
        conv(104, 14): True,  # 20,384 input elements: native
        conv(105, 14): False,  # 20,580: oneDNN
        conv(256, 28, k=1): True,  # pointwise, stride 1, one thread: native at any size
        conv(256, 28, k=1, stride=2): False,
        conv(32, 7, groups=32): False,  # grouped: oneDNN
        conv(3, 8, k=7): False,  # kernel > 3: oneDNN
        conv(16, 32, batch=2): False,  # batch > 1: oneDNN
    }
    frame = configs_frame(list(cases))
    assert native_conv_mask(frame).tolist() == list(cases.values())
    # with more threads, a pointwise conv follows the size rule
    assert native_conv_mask(configs_frame([conv(256, 28, k=1)]), threads=2).tolist() == [False]
