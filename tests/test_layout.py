"""The training-layout probe: channels_last only where the device runs it safely.

The emulated other ISA (``ONEDNN_MAX_CPU_ISA=AVX2``) brings oneDNN's AVX2 kernels to any
x86 host; there, torch 2.13's channels_last backward of a 1x1 stride-2 conv on 5 input
channels corrupts the heap (docs/design/avx2-conv-backward.md). Each test compares the
probe with the plain-torch ground truth run in its own process, so it holds whether or not
a given torch build still has the bug.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
from torch import nn
from tqdm import tqdm

from ttmpd._layout import ConvShape, conv_shapes, probe_layout, training_layout
from ttmpd._progress import stall_watch
from ttmpd._threads import torch_threads

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2"}

REPRO = """
import torch
torch.set_num_threads(1)
conv = torch.nn.Conv2d(5, 8, 1, stride=2).to(memory_format=torch.channels_last)
x = torch.randn(64, 5, 28, 28).to(memory_format=torch.channels_last)
for _ in range(3):
    conv(x).sum().backward()
"""


def _plain_torch_survives(env: dict[str, str]) -> bool:
    import os

    # the probe's own heap checks, so that both sides see a corruption alike
    checks = {"MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165"}
    proc = subprocess.run([sys.executable, "-c", REPRO], env={**os.environ, **checks, **env},
                          capture_output=True, timeout=120)  # fmt: skip
    return proc.returncode == 0


def _downsample_net() -> nn.Module:
    """A pruned-looking net: 5 channels into a 1x1 stride-2 projection (like a ResNet
    downsample after pruning)."""
    return nn.Sequential(
        nn.Conv2d(1, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
        nn.Conv2d(5, 8, 1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip


def test_conv_shapes_records_each_conv_with_its_input():
    shapes = conv_shapes(_downsample_net(), torch.randn(64, 1, 28, 28))
    assert [s.input_shape for s in shapes] == [(64, 1, 28, 28), (64, 5, 28, 28)]
    assert shapes[1].kernel == (1, 1) and shapes[1].stride == (2, 2)
    assert shapes[1].in_channels == 5 and shapes[1].out_channels == 8


@pytest.mark.slow
def test_probe_agrees_with_plain_torch_under_emulated_avx2():
    shapes = (ConvShape(5, 8, (1, 1), (2, 2), (0, 0), (1, 1), 1, True, (64, 5, 28, 28)),)
    choice = probe_layout(shapes, threads=1, env=AVX2)
    if _plain_torch_survives(AVX2):
        assert "failed" not in choice.reason
    else:
        assert not choice.channels_last and "failed" in choice.reason


def _fake_child(tmp_path, body: str) -> str:
    script = tmp_path / "child.sh"
    script.write_text("#!/bin/sh\ncat > /dev/null\n" + body)
    script.chmod(0o755)
    return str(script)


def test_a_crash_after_the_safety_pass_still_counts_as_unsafe(tmp_path, monkeypatch):
    """A corrupted heap may abort only at a later free, after "safe" was printed."""
    fake = _fake_child(tmp_path, 'echo \'{"phase": "safe"}\'\nkill -ABRT $$\n')
    monkeypatch.setattr(sys, "executable", fake)
    choice = probe_layout((ConvShape(5, 8, (1, 1), (2, 2), (0, 0), (1, 1), 1, True, (2, 5, 8, 8)),))
    assert not choice.channels_last and "failed" in choice.reason and "exit code" in choice.reason


def test_a_timeout_after_the_safety_pass_is_safe_but_unmeasured(tmp_path, monkeypatch):
    fake = _fake_child(tmp_path, 'echo \'{"phase": "safe"}\'\nexec sleep 30\n')
    monkeypatch.setattr(sys, "executable", fake)
    shape = ConvShape(5, 8, (1, 1), (2, 2), (0, 0), (1, 1), 1, True, (2, 5, 8, 8))
    choice = probe_layout((shape,), timeout_s=2)
    assert not choice.channels_last and "not measured" in choice.reason


def test_probe_picks_the_faster_layout_it_measured():
    shapes = conv_shapes(_downsample_net(), torch.randn(64, 1, 28, 28))
    choice = probe_layout(shapes, threads=1)
    if "failed" in choice.reason:
        pytest.skip(f"channels_last is unsafe on this host: {choice.reason}")
    assert choice.nchw_ms > 0 and choice.channels_last_ms > 0
    assert choice.channels_last == (choice.channels_last_ms * 1.05 <= choice.nchw_ms)


def test_no_convs_means_nchw_without_a_probe():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    choice = training_layout(net, torch.randn(4, 1, 4, 4))
    assert not choice.channels_last and "no 2-d convolutions" in choice.reason


DISTILL = """
import json, numpy as np, torch
from torch import nn
from ttmpd.distill import DistillConfig, TeacherCache, distill
torch.manual_seed(0)
torch.set_num_threads(1)
def net(c):
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, 8, 1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
to_input = lambda im: torch.from_numpy(im).permute(0, 3, 1, 2).float().div(255).contiguous()
images = np.random.default_rng(0).integers(0, 256, (128, 28, 28, 1), dtype=np.uint8)
teacher = net(16).eval()
cache = TeacherCache.build(teacher, images, to_input)
result = distill(teacher, net(5), cache, to_input,
                 DistillConfig(epochs=1, batch_size=64, progress=False))
print(json.dumps({"layout": result.summary["layout"], "steps": result.summary["steps"]}))
"""


@pytest.mark.slow
def test_distilling_a_pruned_downsample_survives_emulated_avx2():
    """The regression of the crash: the README's distillation on the shapes pruning makes."""
    import os

    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(DISTILL)],
                          env={**os.environ, **AVX2}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2
    if not _plain_torch_survives(AVX2):
        assert summary["layout"].startswith("channels_last conv backward failed")


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    target = 2 if before != 2 else 1
    with torch_threads(target) as threads:
        assert threads == target == torch.get_num_threads()
    assert torch.get_num_threads() == before


def test_stall_watch_says_so_on_the_bar_and_clears_after_progress(caplog):
    bar = tqdm(total=10, disable=False, file=open("/dev/null", "w"))  # noqa: SIM115
    with stall_watch(bar, after_s=0.2, poll_s=0.02):
        time.sleep(0.5)
        stalled = bar.postfix
        bar.update(1)
        time.sleep(0.05)
    assert stalled and "no progress for" in stalled
    assert any("no progress" in r.message for r in caplog.records)
    assert not [t for t in threading.enumerate() if t.name == "ttmpd-stall-watch"]
    bar.close()


def test_stall_watch_stays_quiet_while_the_bar_moves():
    bar = tqdm(total=100, disable=False, file=open("/dev/null", "w"))  # noqa: SIM115
    with stall_watch(bar, after_s=0.2, poll_s=0.02):
        for _ in range(20):
            time.sleep(0.03)
            bar.update(1)
    assert not bar.postfix
    bar.close()


def test_grey_images_become_plain_nchw_model_inputs():
    """A 1-channel NHWC batch permuted to NCHW has channels_last strides; model inputs must
    not, or every conv runs (and trains) in channels_last whatever layout was chosen."""
    import numpy as np

    from ttmpd.base import to_model_input

    images = np.zeros((4, 6, 6, 1), dtype=np.uint8)
    for normalization in (None, ((0.5,), (0.25,))):
        x = to_model_input(images, normalization)
        assert x.stride() == (36, 36, 6, 1)
        assert torch.nn.Conv2d(1, 2, 3)(x).is_contiguous()


@pytest.mark.parametrize("user_policy", [None, "ACTIVE"])
def test_cli_makes_openmp_wait_passively_unless_the_user_chose(tmp_path, user_policy):
    """The policy reaches the torch-cpu table's fingerprint (read when torch starts)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_policy:
        env["OMP_WAIT_POLICY"] = user_policy
    out = tmp_path / "t.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "ttmpd", "profile", "--model", "resnet20", "--input-shape",
         "1,1,8,8", "--backend", "torch-cpu", "--channel-step", "16", "--off-grid-per-unit",
         "0", "--no-progress", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1000:]
    from ttmpd.lut import LatencyTable

    extra = dict(LatencyTable.load(out).fingerprint.extra_info)
    assert extra["omp_wait_policy"] == (user_policy or "PASSIVE")


def test_stall_watch_counts_a_disabled_bar_by_its_updates(caplog):
    """--no-progress bars do not count, so a moving run must not be reported as stalled."""
    bar = tqdm(total=100, disable=True)
    with stall_watch(bar, after_s=0.2, poll_s=0.02):
        for _ in range(20):
            time.sleep(0.03)
            bar.update(1)
    assert not any("no progress" in r.message for r in caplog.records)
    with stall_watch(bar, after_s=0.2, poll_s=0.02):
        time.sleep(0.5)  # a real stall is still logged
    assert any("no progress" in r.message for r in caplog.records)
    assert "update" not in vars(bar)
