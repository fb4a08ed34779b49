"""The ``Backend`` protocol, its settings, and the backend registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from ..._registry import Registry
from ...errors import BackendUnavailableError, InputError
from .._fingerprint import DeviceFingerprint
from .._modules import build_unit
from .._rules import BlockedLayoutRule, DeviceRules
from .._streaming import STREAMING_CHANNELS, WeightStreamingRule, probe_weight_streaming
from .._timing import (
    PairedTiming,
    Runner,
    Timing,
    TimingConfig,
    measure,
    measure_paired,
    measure_rounds,
)
from .._units import UnitConfig

GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class BackendConfig:
    """Settings a backend measures with; all of them are recorded in the fingerprint.

    ``threads``/``inter_op_threads``: intra- and inter-op thread counts (CPU backends).
    ``provider``: ONNX Runtime execution provider. ``graph_optimization``: ONNX Runtime
    graph optimisation level. ``device``: CUDA device index. ``opset``: ONNX opset.
    """

    threads: int = 1
    inter_op_threads: int = 1
    provider: str = "CPUExecutionProvider"
    graph_optimization: str = "all"
    device: int = 0
    opset: int = 17

    def __post_init__(self) -> None:
        if self.threads < 1 or self.inter_op_threads < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}/{self.inter_op_threads}")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise InputError(
                f"unknown graph optimisation {self.graph_optimization!r}; "
                f"choose one of {', '.join(GRAPH_OPTIMIZATIONS)}"
            )


@runtime_checkable
class Backend(Protocol):
    """A target that runs units and whole models and times them.

    ``fusion`` names how the target groups ops into units (see
    :func:`ttmpd.profiler.extract_units`).
    """

    name: ClassVar[str]
    fusion: ClassVar[str]
    config: BackendConfig

    @property
    def compute_device(self) -> str: ...
    def is_available(self) -> bool: ...
    def unavailable_reason(self) -> str: ...
    def fingerprint(self) -> DeviceFingerprint: ...
    def probe_rules(self) -> DeviceRules: ...
    def measure(self, unit: UnitConfig, timing: TimingConfig | None = None) -> Timing: ...
    def measure_model(
        self, model: nn.Module, example_input: torch.Tensor, timing: TimingConfig | None = None
    ) -> Timing: ...
    def measure_paired(
        self,
        reference: nn.Module,
        model: nn.Module,
        example_input: torch.Tensor,
        timing: TimingConfig | None = None,
        thresholds: Sequence[float] = (),
    ) -> PairedTiming: ...


class BackendBase:
    """Shared behaviour: subclasses implement ``_runner(module, inputs)`` and availability."""

    name: ClassVar[str] = ""
    fusion: ClassVar[str] = "none"

    def __init__(self, config: BackendConfig | None = None) -> None:
        self.config = config or BackendConfig()

    @property
    def compute_device(self) -> str:
        """Where torch work aimed at this target computes (search, adaptive BN,
        distillation, evaluation): ``cpu``, or ``cuda:N`` for a backend that runs on GPU N."""
        return "cpu"

    def is_available(self) -> bool:
        return not self.unavailable_reason()

    def unavailable_reason(self) -> str:  # pragma: no cover - overridden
        return ""

    def require_available(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailableError(f"backend {self.name!r} is unavailable: {reason}")

    def probe_rules(self) -> DeviceRules:
        """This device's layout and dispatch rules (:mod:`ttmpd.profiler._rules`), measured
        by the backend's own probes; the default finds no rule, only the per-call
        overhead."""
        return DeviceRules(call_overhead_ms=self.probe_call_overhead_ms())

    def probe_streaming(self, blocked: BlockedLayoutRule | None = None) -> WeightStreamingRule:
        """This device's weight streaming
        (:func:`~ttmpd.profiler._streaming.probe_weight_streaming`), timed end to end with
        :meth:`measure_model`. With a blocked-layout rule, one chain of convs the rule runs
        blocked and one of convs it does not (the first such channel counts from
        :data:`STREAMING_CHANNELS` up); else one chain of :data:`STREAMING_CHANNELS`
        channels. Probed once per process and backend setting (about 10 s on a CPU): the
        caches do not change while a process runs, and profiling several models in one
        process would otherwise pay it every time."""
        self.require_available()
        key = (self.name, repr(self.config), repr(blocked))
        if key not in _STREAMING:
            _STREAMING[key] = self._probe_streaming(blocked)
        return _STREAMING[key]

    def _probe_streaming(self, blocked: BlockedLayoutRule | None) -> WeightStreamingRule:
        start = STREAMING_CHANNELS
        classes = {"other": start}
        if blocked is not None:  # a class with no such count in range is not probed
            counts = range(start, 2 * start)
            found = {
                "blocked": next((c for c in counts if blocked.dense_is_blocked(c)), None),
                "other": next((c for c in counts if not blocked.dense_is_blocked(c)), None),
            }
            classes = {k: c for k, c in found.items() if c is not None}
        timing = STREAMING_TIMING
        return probe_weight_streaming(lambda m, x: self.measure_model(m, x, timing).median_ms,
                                      classes)  # fmt: skip

    def probe_call_overhead_ms(self, repeats: int = 3) -> float:
        """Median latency (ms) of :data:`TRIVIAL_UNIT` over ``repeats`` measurements: the
        per-call overhead every isolated unit pays and a whole model pays once."""
        self.require_available()
        runner = self.unit_runner(TRIVIAL_UNIT)
        return float(sorted(measure(runner).median_ms for _ in range(repeats))[repeats // 2])

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        raise NotImplementedError

    def unit_runner(self, unit: UnitConfig) -> Runner:
        module, inputs = build_unit(unit)
        return self._runner(module, inputs)

    def measure(self, unit: UnitConfig, timing: TimingConfig | None = None) -> Timing:
        """Median latency of one unit (ms per call)."""
        self.require_available()
        return measure(self.unit_runner(unit), timing)

    def measure_rounds(
        self, units: Sequence[UnitConfig], timing: TimingConfig | None = None, rounds: int = 1
    ) -> list[list[Timing]]:
        """Each unit timed in ``rounds`` interleaved rounds: one list per unit, a
        :class:`Timing` per round it ran (:func:`~ttmpd.profiler._timing.measure_rounds`).

        A backend that overrides :meth:`measure` (it computes or scripts its timings, like
        the fake one) is asked once per unit and round, round by round.
        """
        timing = timing or TimingConfig()
        if type(self).measure is not BackendBase.measure:
            sweeps = [[self.measure(u, timing) for u in units] for _ in range(rounds)]
            return [[sweep[i] for sweep in sweeps] for i in range(len(units))]
        self.require_available()
        return measure_rounds([partial(self.unit_runner, u) for u in units], timing, rounds)

    def measure_model(
        self,
        model: nn.Module,
        example_input: torch.Tensor | tuple[torch.Tensor, ...],
        timing: TimingConfig | None = None,
    ) -> Timing:
        """Median end-to-end latency of ``model(example_input)`` (ms per call)."""
        self.require_available()
        inputs = example_input if isinstance(example_input, tuple) else (example_input,)
        model = model.eval()
        return measure(self._runner(model, tuple(inputs)), timing)

    def measure_paired(
        self,
        reference: nn.Module,
        model: nn.Module,
        example_input: torch.Tensor | tuple[torch.Tensor, ...],
        timing: TimingConfig | None = None,
        thresholds: Sequence[float] = (),
    ) -> PairedTiming:
        """``model`` against ``reference`` end to end, sample by sample in alternation
        (:func:`~ttmpd.profiler._timing.measure_paired`): ``ratio`` is the median of
        ``model / reference`` over pairs; sampling may stop early once its CI holds none of
        ``thresholds`` (ratios). A backend that computes its model latencies (it overrides
        :meth:`measure_model`) gives the ratio of two such figures."""
        if type(self).measure_model is not BackendBase.measure_model:
            ref, other = (self.measure_model(m, example_input, timing) for m in (reference, model))
            return PairedTiming(ref, other, other.median_ms / ref.median_ms, 0.0)
        self.require_available()
        inputs = example_input if isinstance(example_input, tuple) else (example_input,)
        runners = [self._runner(m.eval(), tuple(inputs)) for m in (reference, model)]
        return measure_paired(*runners, timing, thresholds)


BACKENDS: Registry[type[BackendBase]] = Registry("backend")

#: The probe's timing: a quarter second per chain (three sessions each, median kept).
STREAMING_TIMING = TimingConfig(max_seconds=0.25)

#: Weight streaming rules probed in this process, by backend name, settings and blocked rule.
_STREAMING: dict[tuple[str, str, str], WeightStreamingRule] = {}

TRIVIAL_UNIT = UnitConfig(op="act", batch=1, in_channels=1, out_channels=1, in_h=1, in_w=1,
                          out_h=1, out_w=1, act="relu")  # fmt: skip
"""A ReLU on one element: its latency is a backend's per-call overhead."""


def get_backend(name: str, config: BackendConfig | None = None) -> BackendBase:
    """Instantiate a registered backend by name (``torch-cpu``, ``torch-cuda``, ...)."""
    return BACKENDS.get(name)(config)
