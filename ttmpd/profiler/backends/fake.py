"""``fake``: a deterministic backend for tests and dry runs (no timing at all).

Latency is a closed-form function of the unit, with a staircase at multiples of 8 channels
like vectorised CPU kernels show::

    latency_ms = 0.002 + 2e-8 * MACs(ceil8(channels)) + 4e-9 * (input + output elements)

A whole model costs the sum of its units times 1.1 plus 0.01 ms. ``TTMPD_FAKE_DELAY_MS``
(environment) makes each unit measurement sleep that long, so tests can interrupt a run.
"""

from __future__ import annotations

import math
import os
import time

import torch
from torch import nn

from .._extract import extract_units
from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._timing import Runner, Timing, TimingConfig
from .._units import UnitConfig, with_channels
from ._base import BACKENDS, BackendBase


def _ceil8(c: int) -> int:
    return max(8, math.ceil(c / 8) * 8)


def fake_latency_ms(unit: UnitConfig) -> float:
    """The fake backend's latency of ``unit`` (see module docstring)."""
    if unit.is_depthwise:
        padded = with_channels(unit, _ceil8(unit.in_channels), _ceil8(unit.in_channels))
    elif unit.op in ("conv", "linear"):
        c_out = unit.out_channels
        padded = with_channels(unit, unit.in_channels, _ceil8(c_out))
    else:
        padded = unit
    elements = unit.input_elements + unit.output_elements
    return 0.002 + 2e-8 * padded.macs + 4e-9 * elements


def _timing(latency_ms: float) -> Timing:
    return Timing(latency_ms, latency_ms, latency_ms, 7, 1, 0.0, False, 0.0)


@BACKENDS.register
class FakeBackend(BackendBase):
    """Deterministic closed-form latencies; always available."""

    name = "fake"
    fusion = "none"

    def unavailable_reason(self) -> str:
        return ""

    def fingerprint(self) -> DeviceFingerprint:
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=library_versions("ttmpd"),
        )

    def measure(self, unit: UnitConfig, timing: TimingConfig | None = None) -> Timing:
        delay_ms = float(os.environ.get("TTMPD_FAKE_DELAY_MS", "0") or 0)
        if delay_ms > 0:
            time.sleep(delay_ms / 1e3)
        return _timing(fake_latency_ms(unit))

    def measure_model(self, model: nn.Module, example_input, timing=None) -> Timing:
        units = extract_units(model, example_input, self.fusion).units
        total = sum(fake_latency_ms(u.config) for u in units)
        return _timing(1.1 * total + 0.01)

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        raise NotImplementedError("the fake backend computes latencies; it runs nothing")
