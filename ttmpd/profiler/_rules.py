"""Device rules: how a backend runs convolutions on *this* device, probed, stored as data.

Kernel libraries pick code paths by shape, and the paths cost differently. Two such rules
matter for latency prediction, and both differ between devices and library builds:

* **blocked layout** (:class:`BlockedLayoutRule`): some backends (ONNX Runtime's NCHWc
  transformer, oneDNN-based plugins) run a conv in a channel-blocked layout when its
  channel counts qualify, padding ``c_out`` (and sometimes ``c_in``) up to the block. The
  block follows the vector width (8 fp32 lanes on AVX2, 16 on AVX-512), and the
  qualifying counts follow the library version.
* **native conv path** (:class:`NativeConvRule`): eager PyTorch on the CPU runs some small
  convs on its own im2col + GEMM path instead of oneDNN, with a dispatch threshold on the
  input size that is a constant of the torch build.

Each backend owns its probes (``BackendBase.probe_rules``); this module holds the records
and the generic inference from observations to a rule, so the predictor reads numbers
from the table's metadata and holds no constant of any host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..errors import InputError
from ._streaming import WeightStreamingRule
from ._units import UnitConfig

RULES_VERSION = 1


@dataclass(frozen=True)
class ConvLayout:
    """What a backend did with one probe conv: whether it runs blocked, and the channel
    counts of its weight as the kernel stores it (padding included)."""

    blocked: bool
    padded_in: int
    padded_out: int


@dataclass(frozen=True)
class BlockedLayoutRule:
    """Which convs run in a channel-blocked layout, and the padding they compute.

    ``block``: output channels are padded to ``ceil(c_out / block) * block``.
    Dense convs with ``c_in <= probed_max`` run blocked iff ``c_in`` is in ``dense_blocked``,
    and compute ``dense_padded_in[c_in - 1]`` input channels; above ``probed_max`` they run
    blocked iff ``c_in % in_multiple == 0`` and compute ``ceil(c_in / in_block) * in_block``.
    Depthwise convs likewise with ``depthwise_blocked`` and ``depthwise_multiple``.
    Other grouped convs run blocked iff both their input and output channels per group are
    multiples of ``grouped_multiple`` (no padding); 0: never (the rule before grouped convs
    were probed, 2026-12-02).

    Layout reorders: an isolated blocked conv converts its input to the blocked layout (if
    it reads blocked, :meth:`reads_blocked`) and its output back; inside a whole model a
    chain of blocked convs converts only where a conv reads the plain layout. One reorder
    of a tensor of ``e`` elements costs ``reorder_overhead_ms + reorder_ns_per_element·e·1e-6``
    ms, timed on the device (0 and 0: not probed, reorders not priced).
    """

    block: int
    in_block: int
    probed_max: int
    dense_blocked: tuple[int, ...]
    dense_padded_in: tuple[int, ...]
    depthwise_blocked: tuple[int, ...]
    in_multiple: int
    depthwise_multiple: int
    reorder_overhead_ms: float = 0.0
    reorder_ns_per_element: float = 0.0
    grouped_multiple: int = 0

    def __post_init__(self) -> None:
        if min(self.block, self.in_block, self.in_multiple, self.depthwise_multiple) < 1:
            raise InputError(f"a blocked-layout rule needs positive sizes, got {self}")
        if self.grouped_multiple < 0:
            raise InputError(f"grouped_multiple must be >= 0 (0: never), got {self}")
        if len(self.dense_padded_in) != self.probed_max:
            raise InputError("dense_padded_in needs one entry per probed input channel count")
        object.__setattr__(self, "dense_blocked", tuple(int(c) for c in self.dense_blocked))
        object.__setattr__(self, "dense_padded_in", tuple(int(c) for c in self.dense_padded_in))
        object.__setattr__(self, "depthwise_blocked", tuple(int(c) for c in self.depthwise_blocked))

    def dense_is_blocked(self, c_in: int) -> bool:
        if c_in <= self.probed_max:
            return c_in in self.dense_blocked
        return c_in % self.in_multiple == 0

    def depthwise_is_blocked(self, channels: int) -> bool:
        if channels <= self.probed_max:
            return channels in self.depthwise_blocked
        return channels % self.depthwise_multiple == 0

    def grouped_is_blocked(self, c_in, c_out, groups):
        """Whether a grouped, not depthwise, conv runs blocked: both per-group channel
        counts are multiples of :attr:`grouped_multiple` (never when it is 0). Integers or
        integer arrays of one shape (elementwise)."""
        m = max(self.grouped_multiple, 1)
        fits = ((c_in // groups) % m == 0) & ((c_out // groups) % m == 0)
        return (self.grouped_multiple > 0) & fits

    def padded_in(self, c_in: int) -> int:
        if c_in <= self.probed_max:
            return self.dense_padded_in[c_in - 1]
        return _ceil(c_in, self.in_block)

    def padded_out(self, c_out: int) -> int:
        return _ceil(c_out, self.block)

    def reads_blocked(self, c_in: int) -> bool:
        """Whether a dense conv on ``c_in`` channels reads its input in the blocked layout:
        it runs blocked and its padded ``c_in`` fills whole blocks; else it reads the plain
        layout, and a blocked tensor must be reordered for it. (A blocked depthwise or
        grouped conv always reads the blocked layout.)"""
        return self.dense_is_blocked(c_in) and self.padded_in(c_in) % self.in_block == 0

    @property
    def prices_reorders(self) -> bool:
        """Whether the device's reorder cost was probed (:attr:`reorder_ns_per_element`)."""
        return self.reorder_ns_per_element > 0 or self.reorder_overhead_ms > 0


@dataclass(frozen=True)
class NativeConvRule:
    """Which convs eager PyTorch (CPU, float32) runs on its native path, not the library's.

    A conv runs natively iff it is dense (or grouped, with ``grouped``), its smaller kernel
    side is at most ``max_kernel``, its batch at most ``max_batch`` and its input at most
    ``max_input_elements`` elements; or it is a 1x1 stride-1 conv with a batch of at most
    ``pointwise_max_batch`` (0: never) when the threads are at most
    ``pointwise_max_threads``.
    """

    max_input_elements: int
    max_kernel: int
    max_batch: int
    pointwise_max_batch: int
    pointwise_max_threads: int
    grouped: bool = False


@dataclass(frozen=True)
class IsolationCost:
    """What a unit of one variant (:func:`unit_variant`) pays when measured alone and not
    inside a whole model: ``overhead_ms + ns_per_element · e · 1e-6`` ms, ``e`` its output
    elements. A backend that measures some units with a helper node a model does not run
    (OpenVINO copies the output of a conv that adds its residual in place) probes it, as
    that unit alone minus the same unit without the helper's reason."""

    variant: str
    overhead_ms: float
    ns_per_element: float

    def __post_init__(self) -> None:
        if self.overhead_ms < 0 or self.ns_per_element < 0:
            raise InputError(f"an isolation cost is non-negative, got {self}")

    def cost_ms(self, elements: np.ndarray) -> np.ndarray:
        """The cost (ms) for output tensors of ``elements`` elements; same shape."""
        return self.overhead_ms + self.ns_per_element * np.asarray(elements, float) * 1e-6


#: ``(channels, height = width)`` of the convs :func:`probe_residual_isolation` measures:
#: outputs of 2 Ki to 64 Ki elements.
ISOLATION_SHAPES = ((2, 32), (16, 16), (64, 8), (16, 32), (32, 32), (64, 32))


def probe_residual_isolation(measure_ms: Callable[[UnitConfig], float]) -> IsolationCost:
    """The :class:`IsolationCost` of ``conv+residual`` units: each 3x3 conv of
    :data:`ISOLATION_SHAPES` (BN, ReLU) measured alone with a residual input and without
    (``measure_ms(unit) -> ms``, as the table measures units), the difference (clipped at 0)
    fitted as ``overhead + ns·output elements`` (:func:`fit_reorder_cost`). For a backend
    that adds a fused residual in place inside a model, at no cost of its own."""
    samples = []
    for channels, hw in ISOLATION_SHAPES:
        plain = UnitConfig("conv", 1, channels, channels, hw, hw, hw, hw, 3, 3, 1, 1, 1, 1,
                           bn=True, act="relu")  # fmt: skip
        extra = measure_ms(replace(plain, n_inputs=2)) - measure_ms(plain)
        samples.append((plain.output_elements, max(0.0, extra)))
    overhead_ms, ns = fit_reorder_cost(samples)
    return IsolationCost(RESIDUAL_VARIANT, overhead_ms, ns)


#: The variant of a conv with a fused residual input (:func:`unit_variant`).
RESIDUAL_VARIANT = "conv+residual"


def unit_variant(op: str, n_inputs: int) -> str:
    """A unit's variant for layout and isolation rules: its kind, ``conv+residual`` for a
    conv with a fused residual input (``n_inputs > 1``)."""
    return RESIDUAL_VARIANT if op == "conv" and n_inputs > 1 else op


@dataclass(frozen=True)
class DeviceRules:
    """The probed rules of one backend on one device (stored in the LUT metadata).

    ``second_slope``: which convs the whole-model calibration gives their own slope,
    ``"blocked"``, ``"native"`` or ``""`` (none), decided by which rule the probe found.
    ``unit_layouts``: ``(unit kind, memory layout)`` pairs, sorted by kind: the layout the
    backend runs each kind of unit in inside a whole model, as the backend names it
    (OpenVINO's ``abcd`` is planar NCHW, ``acdb`` channels-last); empty where the backend
    does not report layouts. Tables written before the field hold none.
    ``call_overhead_ms``: what one call of a trivial unit (a ReLU on one element) costs on
    the backend, the per-call overhead every isolated unit pays and a whole model pays
    once (0: not probed).
    ``streaming``: what weights cost beyond the caches inside a whole model
    (:class:`~ttmpd.profiler._streaming.WeightStreamingRule`); None: not probed (tables
    written before 2026-12-02).
    ``isolation``: :class:`IsolationCost` per variant, what its units pay alone and not in a
    model; empty where the backend measures every unit as a model runs it (and in tables
    written before 2026-12-03).
    """

    blocked: BlockedLayoutRule | None = None
    native: NativeConvRule | None = None
    probe_seconds: float = 0.0
    version: int = RULES_VERSION
    notes: tuple[str, ...] = field(default=())
    unit_layouts: tuple[tuple[str, str], ...] = field(default=())
    call_overhead_ms: float = 0.0
    streaming: WeightStreamingRule | None = None
    isolation: tuple[IsolationCost, ...] = field(default=())

    def __post_init__(self) -> None:
        pairs = tuple(sorted((str(k), str(v)) for k, v in self.unit_layouts))
        if len({k for k, _ in pairs}) != len(pairs):
            raise InputError(f"unit_layouts names a unit kind twice: {pairs}")
        object.__setattr__(self, "unit_layouts", pairs)
        costs = tuple(sorted(self.isolation, key=lambda c: c.variant))
        if len({c.variant for c in costs}) != len(costs):
            raise InputError(f"isolation names a variant twice: {costs}")
        object.__setattr__(self, "isolation", costs)

    def isolation_ms(self, ops: Sequence[str], n_inputs: Sequence[int],
                     output_elements: Sequence[float]) -> np.ndarray:  # fmt: skip
        """Each unit's :class:`IsolationCost` (ms; 0 for a variant without one), from its
        op, input count and output elements. Shape ``(n_units,)``."""
        out = np.zeros(len(ops))
        if not self.isolation or not len(ops):
            return out
        op = np.asarray(ops, dtype=object)
        residual = (op == "conv") & (np.asarray(n_inputs) > 1)
        variants = np.where(residual, RESIDUAL_VARIANT, op)  # unit_variant, vectorised
        elements = np.asarray(output_elements, float)
        for cost in self.isolation:
            hit = variants == cost.variant
            out[hit] = cost.cost_ms(elements[hit])
        return out

    @property
    def second_slope(self) -> str:
        if self.blocked is not None:
            return "blocked"
        if self.native is not None:
            return "native"
        return ""

    def describe(self) -> str:
        """One line per rule, for ``ttmpd lut show`` and the docs."""
        lines = []
        if self.blocked is not None:
            b = self.blocked
            lines.append(
                f"blocked layout: block {b.block} (c_in pad block {b.in_block}); dense convs "
                f"blocked for c_in in {_ranges(b.dense_blocked)} (probed 1-{b.probed_max}), "
                f"then multiples of {b.in_multiple}; depthwise for "
                f"{_ranges(b.depthwise_blocked)}, then multiples of {b.depthwise_multiple}; "
                + (f"grouped when both per-group counts are multiples of {b.grouped_multiple}"
                   if b.grouped_multiple else "grouped never")
            )  # fmt: skip
            if b.prices_reorders:
                lines.append(
                    f"layout reorder: {b.reorder_overhead_ms * 1e3:.2f} µs + "
                    f"{b.reorder_ns_per_element:.3f} ns per element"
                )
        if self.native is not None:
            n = self.native
            lines.append(
                f"native conv path: {'any groups' if n.grouped else 'dense'}, kernel <= "
                f"{n.max_kernel}, batch <= {n.max_batch}, "
                f"input <= {n.max_input_elements} elements; 1x1 stride-1 up to batch "
                f"{n.pointwise_max_batch} on <= {n.pointwise_max_threads} threads"
            )
        if self.unit_layouts:
            lines.append(
                "unit layouts in a whole model: "
                + ", ".join(f"{kind} {layout}" for kind, layout in self.unit_layouts)
            )
        if self.call_overhead_ms > 0:
            lines.append(f"per-call overhead: {self.call_overhead_ms * 1e3:.2f} µs")
        if self.streaming is not None:
            lines.append(self.streaming.describe())
        for c in self.isolation:
            lines.append(
                f"measured alone, {c.variant} pays {c.overhead_ms * 1e3:.2f} µs + "
                f"{c.ns_per_element:.3f} ns per output element more than in a model"
            )
        return "\n".join(lines) or "no layout or dispatch rule found"

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "blocked": asdict(self.blocked) if self.blocked else None,
            "native": asdict(self.native) if self.native else None,
            "probe_seconds": self.probe_seconds,
            "notes": list(self.notes),
            "unit_layouts": dict(self.unit_layouts),
            "call_overhead_ms": self.call_overhead_ms,
            "streaming": self.streaming.to_dict() if self.streaming else None,
            "isolation": [asdict(c) for c in self.isolation],
        }

    @classmethod
    def from_dict(cls, d: dict) -> DeviceRules:
        if int(d.get("version", 0)) != RULES_VERSION:
            raise InputError(
                f"device rules of version {d.get('version')} (this ttmpd reads {RULES_VERSION}); "
                "re-profile the table with this ttmpd"
            )
        blocked, native = d.get("blocked"), d.get("native")
        return cls(
            blocked=BlockedLayoutRule(**blocked) if blocked else None,
            native=NativeConvRule(**native) if native else None,
            probe_seconds=float(d.get("probe_seconds", 0.0)),
            notes=tuple(d.get("notes", ())),
            unit_layouts=tuple((d.get("unit_layouts") or {}).items()),
            call_overhead_ms=float(d.get("call_overhead_ms", 0.0)),
            streaming=WeightStreamingRule.from_dict(d["streaming"]) if d.get("streaming") else None,
            isolation=tuple(IsolationCost(**c) for c in d.get("isolation") or ()),
        )


ObserveConvs = Callable[[Sequence[tuple[int, int, int]]], list[ConvLayout | None]]
"""``[(c_in, c_out, groups), ...] -> [ConvLayout, ...]`` for 3x3 convs (None: no conv found)."""


def infer_blocked_rule(
    observe: ObserveConvs, probed_max: int | None = None
) -> BlockedLayoutRule | None:
    """Infer a :class:`BlockedLayoutRule` from a backend's observations of probe convs.

    1. ``c_in = 1..8 -> c_out = 1``: none blocked -> the backend has no blocked layout
       (None); else ``block`` = the largest padded ``c_out``.
    2. dense ``c_in = 1..probed_max`` (default ``4·block + 4``) to ``c_out = block`` and
       depthwise ``c = 1..probed_max``: the blocked sets and padded input counts.
    3. Extrapolation from the upper half of the probed range: ``in_multiple`` is the
       smallest power of two (up to ``block``) whose multiples are exactly the blocked
       counts there; ``in_block`` the smallest size whose ceiling reproduces every padded
       ``c_in`` there (the largest padding seen if none does).
    4. grouped convs, 2 groups of ``k = 1..2·block`` channels in and out: none blocked ->
       ``grouped_multiple = 0`` (never); else the power of two whose multiples are the
       blocked ``k``, as in 3. (Asking both per-group counts to be multiples follows ONNX
       Runtime, where 2 groups of 16 in and 24 out do not run blocked on a 16-wide block.)
    """
    first = observe([(c, 1, 1) for c in range(1, 9)])
    blocked = [o for o in first if o is not None and o.blocked]
    if not blocked:
        return None
    block = max(o.padded_out for o in blocked)
    probed_max = probed_max or 4 * block + 4
    counts = range(1, probed_max + 1)
    dense = observe([(c, block, 1) for c in counts])
    depthwise = observe([(c, c, c) for c in counts])
    dense_blocked = [c for c, o in zip(counts, dense, strict=True) if o is not None and o.blocked]
    padded_in = [
        o.padded_in if o is not None and o.blocked else c
        for c, o in zip(counts, dense, strict=True)
    ]
    dw_blocked = [c for c, o in zip(counts, depthwise, strict=True) if o is not None and o.blocked]
    upper = range(probed_max // 2 + 1, probed_max + 1)
    per_group = range(1, 2 * block + 1)
    grouped = observe([(2 * k, 2 * k, 2) for k in per_group])
    grouped_flags = [o is not None and o.blocked for o in grouped]
    return BlockedLayoutRule(
        block=block,
        in_block=_padding_block(
            [(c, padded_in[c - 1]) for c in upper if c in dense_blocked], block
        ),
        probed_max=probed_max,
        dense_blocked=tuple(dense_blocked),
        dense_padded_in=tuple(padded_in),
        depthwise_blocked=tuple(dw_blocked),
        in_multiple=_multiple([c in dense_blocked for c in upper], upper, block),
        depthwise_multiple=_multiple([c in dw_blocked for c in upper], upper, block),
        grouped_multiple=(_multiple(grouped_flags, per_group, block) if any(grouped_flags) else 0),
    )


def fit_reorder_cost(samples: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """``(reorder_overhead_ms, reorder_ns_per_element)`` of a line through ``(elements, ms
    per reorder)`` samples: least squares on ``ms = overhead + ns·elements·1e-6``, both
    coefficients kept non-negative (a noisy sample must not give reorders a negative
    cost). Needs two distinct tensor sizes."""
    from scipy.optimize import nnls

    if len({e for e, _ in samples}) < 2:
        raise InputError("a reorder cost needs samples of two or more tensor sizes")
    A = np.array([[1.0, e * 1e-6] for e, _ in samples])
    y = np.array([ms for _, ms in samples], dtype=float)
    scale = np.maximum(y, 1e-9)  # relative residuals: sizes span an order of magnitude
    coef, _ = nnls(A / scale[:, None], y / scale)
    return float(coef[0]), float(coef[1])


def infer_native_rule(
    native: Callable[..., bool], threads: int, max_channels: int = 8192
) -> NativeConvRule | None:
    """Infer a :class:`NativeConvRule` from ``native(c_in, hw, kernel, batch, groups)``,
    which says whether one conv ran on the native path (probes at ``hw = 8``).

    None if a batch-1 3x3 conv on 4 channels is not native. Otherwise the largest native
    batch of (1, 2, 4, 8, 16, 32), kernel of (3, 5, 7) and grouped flag on that conv; the
    input threshold by bisection over ``c_in`` (resolution 64 elements); the largest
    native batch of a 1x1 conv on an input past the threshold.
    """
    if not native(4, 8, 3, 1, 1):
        return None
    batches = (1, 2, 4, 8, 16, 32)
    max_batch = max(b for b in batches if b == 1 or native(4, 8, 3, b, 1))
    max_kernel = max(k for k in (3, 5, 7) if k == 3 or native(4, 8, k, 1, 1))
    low, high = 4, max_channels  # native at low; find the last native c_in
    if native(high, 8, 3, 1, 1):
        low = high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if native(mid, 8, 3, 1, 1) else (low, mid)
    max_input = low * 64
    big = max(8, -(-(max_input + 1) // 256))  # channels putting a 16x16 input past it
    pointwise = [b for b in batches if native(big, 16, 1, b, 1)]
    return NativeConvRule(
        max_input_elements=max_input,
        max_kernel=max_kernel,
        max_batch=max_batch,
        pointwise_max_batch=max(pointwise, default=0),
        pointwise_max_threads=threads if pointwise else 0,
        grouped=native(4, 8, 3, 1, 4),
    )


def _multiple(flags: Sequence[bool], counts: range, block: int) -> int:
    """Smallest power of two ``m <= block`` with ``flag_c == (c % m == 0)`` on every count;
    the best-agreeing one when none fits exactly; ``block·64`` (never) when no flag is set."""
    if not any(flags):
        return block * 64
    candidates = [2**k for k in range(int(math.log2(block)) + 1)]
    agree = [sum(f == (c % m == 0) for f, c in zip(flags, counts, strict=True)) for m in candidates]
    return candidates[max(range(len(candidates)), key=lambda i: (agree[i], -i))]


def _padding_block(pairs: Sequence[tuple[int, int]], block: int) -> int:
    for size in range(1, 2 * block + 1):
        if all(_ceil(c, size) == padded for c, padded in pairs):
            return size
    return block


def _ceil(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _ranges(values: Sequence[int]) -> str:
    """``1-16, 20, 24`` style text of sorted integers."""
    if not values:
        return "none"
    out, start, prev = [], values[0], values[0]
    for v in (*values[1:], None):
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
        if v is not None:
            start = prev = v
    return ", ".join(out)
