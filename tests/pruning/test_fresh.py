"""FreshMeasurer: measure_beside in a spawned process that loads nothing but the original."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace

import pytest
import torch
from nets import ResidualNet

from ttmpd.profiler import BackendConfig, get_backend
from ttmpd.profiler.backends.fake import FakeBackend
from ttmpd.pruning import FreshMeasurer, apply_plan, channel_groups, measure_beside, random_plan


class ChildOnlyFails(FakeBackend):
    """The fake device, except that it cannot be built in a child process."""

    def __init__(self, config=None) -> None:
        if multiprocessing.parent_process() is not None:
            os._exit(3)
        super().__init__(config)


class WhereMeasured(FakeBackend):
    """The fake device that reads the measuring process's id into the original's time."""

    def measure_paired(self, reference, model, example_input, timing=None, thresholds=()):
        paired = super().measure_paired(reference, model, example_input, timing, thresholds)
        return replace(paired, reference=replace(paired.reference, median_ms=float(os.getpid())))


def _pair(x):
    torch.manual_seed(0)
    net = ResidualNet().eval()
    pruned = apply_plan(net, x, random_plan(net, x, channel_groups(net, x), 0.5, seed=0))
    return net, pruned


def test_the_worker_reads_what_measure_beside_reads_here_in_another_process(x16):
    """The fake device computes latency from the model, so the two processes must agree
    on the ratio; the worker's backend is rebuilt from the caller's (same type, same
    config) in a process that is not the caller's (its id comes back as the original's
    time), and the caller's models are not touched."""
    x = x16[:1]
    net, pruned = _pair(x)
    config = BackendConfig(threads=1, inter_op_threads=1)
    here = measure_beside(net, pruned, x, get_backend("fake", config), thresholds=(0.4, 0.6))
    before = [p.clone() for p in pruned.parameters()]
    with FreshMeasurer(net, x, WhereMeasured(config)) as measure:
        pid_ms, pruned_ms = measure(pruned, thresholds=(0.4, 0.6))
        assert measure(net) == pytest.approx((pid_ms, pid_ms))  # the original is itself
    assert int(pid_ms) != os.getpid()
    assert pruned_ms / pid_ms == pytest.approx(here[1] / here[0]) and here[1] < 0.9 * here[0]
    assert all(torch.equal(a, b) for a, b in zip(before, pruned.parameters(), strict=True))


def test_a_worker_that_dies_says_so(x16):
    x = x16[:1]
    net, pruned = _pair(x)
    measure = FreshMeasurer(net, x, ChildOnlyFails())
    with pytest.raises(RuntimeError, match="measuring process died"):
        measure(pruned)
    measure.close()
