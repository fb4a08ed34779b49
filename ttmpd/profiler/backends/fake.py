"""``fake``: a deterministic backend for tests and dry runs (no timing at all).

Latency is a closed-form function of the unit, with a staircase at multiples of 8 channels
like vectorised CPU kernels show::

    latency_ms = 0.002 + 2e-8 * MACs(ceil8(channels)) + 4e-9 * (input + output elements)

A whole model costs the sum of its units times 1.1 plus 0.01 ms. ``TTMPD_FAKE_DELAY_MS``
(environment) makes each unit measurement sleep that long, so tests can interrupt a run.

``TTMPD_FAKE_BLOCK`` (environment, default 0: off) emulates a device with a blocked conv
layout of that many channels, so tests can check that probed rules follow the device: a
dense conv runs blocked iff ``c_in < B`` or ``c_in % 4 == 0`` (a depthwise one iff
``c % 4 == 0``), then costs the MACs with ``c_out`` (and, from ``c_in >= B``, ``c_in``)
padded to ``B``; any other conv runs a generic kernel at twice the cost. The block is part
of the fake device's fingerprint (``provider``). Like ONNX Runtime's NCHWc kernels, a
blocked conv measured alone also reorders its input (when it reads the blocked layout:
``c_in`` padded to whole blocks, or depthwise) and its output, each reorder of ``e``
elements costing ``fake_reorder_ms(e) = 0.0005 + 3e-7·e``; inside a whole model a tensor is
reordered only where its producer's layout and a consumer's differ
(:func:`fake_model_reorders_ms`).

``TTMPD_FAKE_CACHE_KIB`` (environment, default 0: off) emulates caches that hold that many
KiB of weights between calls: a whole model whose weights exceed them streams, each unit
paying ``rate · w · (1 − C/F)⁺`` (:func:`fake_streaming_ms`), the rate three times higher
for convs outside the blocked layout; with ``TTMPD_FAKE_CACHE_SHAPE=step`` a cache that
keeps nothing of a footprint beyond it (every unit pays ``rate · w``). Its probe then
measures the weight streaming rule.

``TTMPD_FAKE_RESIDUAL_ALONE_US`` (environment, default 0: off) emulates a device that fuses
conv, BN, residual add and activation (``fusion``) and adds the residual in place inside a
model but pays that many µs (plus 0.5 ns per output
element) to run a residual conv alone, as OpenVINO does with the copy its isolated units
need. Its probe then measures that isolation cost.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from .._extract import LayerUnit, extract_units
from .._fingerprint import DeviceFingerprint, host_fingerprint, library_versions
from .._rules import (
    ConvLayout,
    DeviceRules,
    fit_reorder_cost,
    infer_blocked_rule,
    probe_residual_isolation,
)
from .._timing import Runner, Timing, TimingConfig
from .._units import UnitConfig, with_channels
from ._base import BACKENDS, TRIVIAL_UNIT, BackendBase


def _ceil8(c: int) -> int:
    return max(8, math.ceil(c / 8) * 8)


def fake_block() -> int:
    """The emulated blocked-layout width (``TTMPD_FAKE_BLOCK``; 0: no blocked layout).
    A value that is not a non-negative integer makes the fake device's probe fail."""
    value = int(os.environ.get("TTMPD_FAKE_BLOCK", "0") or 0)
    if value < 0:
        raise ValueError(f"TTMPD_FAKE_BLOCK must be >= 0, got {value}")
    return value


def fake_conv_layout(c_in: int, c_out: int, groups: int, block: int) -> ConvLayout:
    """How the fake device with ``block`` runs a conv (see module docstring)."""
    depthwise = groups > 1 and groups == c_in
    if block <= 0 or (groups > 1 and not depthwise):
        return ConvLayout(False, c_in, c_out)
    if depthwise:
        blocked = c_in % 4 == 0
        padded = -(-c_in // block) * block if blocked else c_in
        return ConvLayout(blocked, padded, padded)
    blocked = c_in < block or c_in % 4 == 0
    if not blocked:
        return ConvLayout(False, c_in, c_out)
    padded_in = c_in if c_in < block else -(-c_in // block) * block
    return ConvLayout(True, padded_in, -(-c_out // block) * block)


def fake_reorder_ms(elements: int) -> float:
    """One layout reorder of a tensor of ``elements`` on the fake blocked device (ms)."""
    return 0.0005 + 3e-7 * elements


def _reads_blocked(unit: UnitConfig, layout: ConvLayout, block: int) -> bool:
    return layout.blocked and (unit.is_depthwise or layout.padded_in % block == 0)


def fake_residual_alone_ms(unit: UnitConfig) -> float:
    """What a residual conv pays alone and not in a model on the fake device (ms; module
    docstring: ``TTMPD_FAKE_RESIDUAL_ALONE_US``); 0 for any other unit."""
    us = _residual_alone_us()
    if us <= 0 or unit.op != "conv" or unit.n_inputs < 2:
        return 0.0
    return us * 1e-3 + 0.5e-6 * unit.output_elements


def _residual_alone_us() -> float:
    return float(os.environ.get("TTMPD_FAKE_RESIDUAL_ALONE_US", "0") or 0)


def fake_latency_ms(unit: UnitConfig, reorders: bool = True) -> float:
    """The fake backend's latency of ``unit`` (see module docstring), measured alone:
    ``reorders=False`` leaves out a blocked conv's layout reorders (and what a residual
    conv pays alone, :func:`fake_residual_alone_ms`), as inside a model."""
    if reorders:
        return _fake_latency_ms(unit, True) + fake_residual_alone_ms(unit)
    return _fake_latency_ms(unit, False)


def _fake_latency_ms(unit: UnitConfig, reorders: bool) -> float:
    block = fake_block()
    if block and unit.op == "conv":
        layout = fake_conv_layout(unit.in_channels, unit.out_channels, unit.groups, block)
        elements = unit.input_elements + unit.output_elements
        if layout.blocked:
            padded = with_channels(unit, layout.padded_in, layout.padded_out)
            own = 0.0
            if reorders:
                own = fake_reorder_ms(unit.output_elements)
                if _reads_blocked(unit, layout, block):
                    own += fake_reorder_ms(unit.input_elements)
            return 0.002 + 2e-8 * padded.macs + 4e-9 * elements + own
        return 0.002 + 4e-8 * unit.macs + 4e-9 * elements
    if unit.is_depthwise:
        padded = with_channels(unit, _ceil8(unit.in_channels), _ceil8(unit.in_channels))
    elif unit.op in ("conv", "linear"):
        c_out = unit.out_channels
        padded = with_channels(unit, unit.in_channels, _ceil8(c_out))
    else:
        padded = unit
    elements = unit.input_elements + unit.output_elements
    return 0.002 + 2e-8 * padded.macs + 4e-9 * elements


#: Unit kinds that run in whatever layout their inputs come in (blocked if all are).
_LAYOUT_PASSING = frozenset({"act", "add", "bn", "maxpool", "avgpool", "gap", "mul"})


def fake_model_reorders_ms(units: Sequence[LayerUnit]) -> float:
    """Layout reorders of a whole model on the fake blocked device (ms): each tensor is
    reordered once for the consumers that need the other layout. Blocked convs produce the
    blocked layout and read it if :func:`_reads_blocked` (a fused residual input in the
    layout they write); layout-passing units, and a concat whose pieces fill whole blocks,
    keep theirs
    (blocked if every input is); any other unit and the model output need the plain one;
    the model input comes plain."""
    block = fake_block()
    if not block:
        return 0.0
    produces = {-1: False}  # producer index -> blocked output
    width = {u.index: u.config.out_channels for u in units}
    needs: dict[int, set[bool]] = {-1: set()}
    for u in units:
        c = u.config
        if c.op == "conv":
            layout = fake_conv_layout(c.in_channels, c.out_channels, c.groups, block)
            produces[u.index] = layout.blocked
            # a fused residual input is added in the conv's output layout
            wants = [_reads_blocked(c, layout, block)] + [layout.blocked] * (len(u.inputs) - 1)
        elif c.op in _LAYOUT_PASSING or c.op == "cat":
            produces[u.index] = all(produces[i] for i in u.inputs)
            if c.op == "cat":  # blocked only where every piece fills whole blocks
                pieces = [width.get(i, 0) for i in u.inputs]
                produces[u.index] &= all(p % block == 0 for p in pieces)
            wants = [produces[u.index]] * len(u.inputs)
        else:
            produces[u.index] = False
            wants = [False] * len(u.inputs)
        needs[u.index] = set()
        for i, want in zip(u.inputs, wants, strict=True):
            needs[i].add(want)
    consumed = {i for u in units for i in u.inputs}
    elements = {u.index: u.config.output_elements for u in units}
    elements[-1] = units[0].config.input_elements if units else 0
    total = 0.0
    for index, blocked in produces.items():
        wanted = needs[index] | ({False} if index not in consumed and index >= 0 else set())
        if (not blocked) in wanted:
            total += fake_reorder_ms(elements[index])
    return total


#: The fake device's weight streaming rates (ms per byte): blocked-layout convs, others.
FAKE_STREAM_MS_PER_BYTE = {"blocked": 3e-8, "other": 9e-8}


def fake_cache_bytes() -> float:
    """The emulated weight cache (``TTMPD_FAKE_CACHE_KIB``, bytes; 0: no streaming)."""
    return 1024.0 * float(os.environ.get("TTMPD_FAKE_CACHE_KIB", "0") or 0)


def fake_streaming_ms(units: Sequence[LayerUnit]) -> float:
    """Weight streaming of a whole model on the fake device (ms; module docstring)."""
    capacity = fake_cache_bytes()
    weights = [4.0 * u.config.params if u.config.op in ("conv", "linear") else 0.0 for u in units]
    footprint = sum(weights)
    if capacity <= 0 or footprint <= capacity:
        return 0.0
    block = fake_block()
    total = 0.0
    for u, w in zip(units, weights, strict=True):
        c = u.config
        layout = fake_conv_layout(c.in_channels, c.out_channels, c.groups, block)
        blocked = c.op == "conv" and block > 0 and layout.blocked
        total += FAKE_STREAM_MS_PER_BYTE["blocked" if blocked else "other"] * w
    step = os.environ.get("TTMPD_FAKE_CACHE_SHAPE", "") == "step"
    return total * (1.0 if step else 1 - capacity / footprint)


def _timing(latency_ms: float) -> Timing:
    return Timing(latency_ms, latency_ms, latency_ms, 7, 1, 0.0, False, 0.0)


@BACKENDS.register
class FakeBackend(BackendBase):
    """Deterministic closed-form latencies; always available."""

    name = "fake"

    @property
    def fusion(self) -> str:  # type: ignore[override]
        """``conv-bn-add-act`` on a device that fuses residuals
        (``TTMPD_FAKE_RESIDUAL_ALONE_US``), else ``none``."""
        return "conv-bn-add-act" if _residual_alone_us() > 0 else "none"

    def unavailable_reason(self) -> str:
        return ""

    def fingerprint(self) -> DeviceFingerprint:
        block = os.environ.get("TTMPD_FAKE_BLOCK", "0") or "0"  # as set: the probe validates
        return host_fingerprint(
            self.name,
            self.config.threads,
            self.config.inter_op_threads,
            library_versions=library_versions("ttmpd"),
            provider=f"fake-block{block}" if block != "0" else "",
        )

    def probe_rules(self) -> DeviceRules:
        """The emulated device's rules, inferred from its conv layouts like a real probe."""
        block = fake_block()
        rule = infer_blocked_rule(
            lambda specs: [fake_conv_layout(i, o, g, block) for i, o, g in specs]
        )
        if rule is not None:
            overhead_ms, ns = fit_reorder_cost([(e, fake_reorder_ms(e)) for e in (4096, 65536)])
            rule = replace(rule, reorder_overhead_ms=overhead_ms, reorder_ns_per_element=ns)
        # computed, not timed: probed afresh (the emulated cache is an environment setting)
        streaming = self._probe_streaming(rule) if fake_cache_bytes() > 0 else None
        isolation = ()
        if _residual_alone_us() > 0:  # probed as a real device's would be
            isolation = (probe_residual_isolation(lambda u: self.measure(u).median_ms),)
        return DeviceRules(blocked=rule, call_overhead_ms=fake_latency_ms(TRIVIAL_UNIT),
                           streaming=streaming, isolation=isolation)  # fmt: skip

    def measure(self, unit: UnitConfig, timing: TimingConfig | None = None) -> Timing:
        delay_ms = float(os.environ.get("TTMPD_FAKE_DELAY_MS", "0") or 0)
        if delay_ms > 0:
            time.sleep(delay_ms / 1e3)
        return _timing(fake_latency_ms(unit))

    def measure_model(self, model: nn.Module, example_input, timing=None) -> Timing:
        units = extract_units(model, example_input, self.fusion).units
        total = sum(fake_latency_ms(u.config, reorders=False) for u in units)
        extra = fake_model_reorders_ms(units) + fake_streaming_ms(units)
        return _timing(1.1 * (total + extra) + 0.01)

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        raise NotImplementedError("the fake backend computes latencies; it runs nothing")
