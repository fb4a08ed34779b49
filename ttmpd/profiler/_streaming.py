"""Weight streaming: what a unit's weights cost inside a model too big for the caches.

A unit measured alone runs many times over the same weights, which stay in the caches.
Inside a whole model each inference sweeps every unit's weights once; when the model's
weights (its footprint ``F``, bytes) exceed what the caches keep between inferences (the
capacity ``C``), a share of them comes from memory on every call. Under a simple capacity
model, a fraction ``(1 − C/F)⁺`` of each unit's weights misses, so a unit with ``w`` bytes
of weights costs, beyond its isolated latency::

    Δm = s · w · (1 − C/F)⁺            (ms; s in ms per byte, per kernel class)

and a model ``s · (F − C)⁺`` in all when one ``s`` applies. A unit whose own weights
outgrow the caches (a large classifier) misses the share ``m(w)`` already when measured
alone, so it pays only ``s · w · (m(F) − m(w))`` more in a model, where ``m`` is the missed
share (``(1 − C/F)⁺`` here, or the probed ramp below). Kernels stream their weights
at different rates: ONNX Runtime's channel-blocked (NCHWc) convs read a layout reordered
once at load, other convs run a GEMM that packs the weights on every call.

:func:`probe_weight_streaming` measures ``C`` and ``s`` on the device, from chains of
``K`` 1x1 convs (``c -> c`` on a 1x1 input, so weight traffic dominates) whose footprint
grows with ``K``; one chain per kernel class, the channel counts chosen by the backend
(:meth:`~ttmpd.profiler.BackendBase.probe_rules`). :func:`fit_streaming` fits both shapes
to the per-layer latencies and keeps the one with the smaller AIC. The measurements behind
the model are in docs/design/measurement.md ("Weights beyond the cache") and
docs/design/device-rules.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InputError

#: Chain lengths of the probe: footprints from one layer to 64, about sqrt(2) apart, so a
#: cache that overflows within a factor of two is seen between two lengths.
CHAIN_LAYERS = (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64)
#: The shapes of the missed share ``m(F)`` (module docstring).
SHAPES = ("hyperbolic", "ramp")
#: Channels of a probe layer: 400 -> 400 weighs 625 KiB in fp32, 64 of them 39 MiB.
STREAMING_CHANNELS = 400
#: Bytes per fp32 weight.
WEIGHT_BYTES = 4


@dataclass(frozen=True)
class WeightStreamingRule:
    """The device's weight streaming (module docstring): ``capacity_bytes`` (``C``) and
    ``ms_per_byte`` (``s``) per kernel class, ``(class, s)`` pairs sorted by class
    (``"blocked"``: convs the blocked-layout rule runs blocked; ``"other"``: every other
    unit). ``samples``: the probe's ``(class, footprint bytes, ms per layer)``, kept for
    audit. ``probed_max_bytes``: the largest footprint probed; beyond it the fitted line is
    extrapolated. ``full_bytes``: ``C₁`` of a ``"ramp"`` share, the footprint from which
    every weight misses; None: the ``"hyperbolic"`` share (every table probed before the
    ramp was measured)."""

    capacity_bytes: float
    ms_per_byte: tuple[tuple[str, float], ...]
    probed_max_bytes: float = 0.0
    samples: tuple[tuple[str, float, float], ...] = field(default=())
    full_bytes: float | None = None

    def __post_init__(self) -> None:
        pairs = tuple(sorted((str(k), float(v)) for k, v in self.ms_per_byte))
        if any(v < 0 for _, v in pairs) or self.capacity_bytes < 0:
            raise InputError(f"weight streaming needs non-negative figures, got {pairs}")
        if self.full_bytes is not None and self.full_bytes < self.capacity_bytes:
            raise InputError(
                f"a ramp ends at or after its start, got {self.capacity_bytes:.0f} to "
                f"{self.full_bytes:.0f} bytes"
            )
        object.__setattr__(self, "ms_per_byte", pairs)
        object.__setattr__(self, "samples", tuple((str(c), float(f), float(m))
                                                  for c, f, m in self.samples))  # fmt: skip

    def rate(self, kernel_class: str) -> float:
        """``s`` of a class (ms per byte); a class the probe did not measure takes the
        ``"other"`` rate, else 0."""
        rates = dict(self.ms_per_byte)
        return rates.get(kernel_class, rates.get("other", 0.0))

    @property
    def shape(self) -> str:
        """The missed share's shape: ``"ramp"`` with ``full_bytes``, else ``"hyperbolic"``."""
        return "hyperbolic" if self.full_bytes is None else "ramp"

    def missed_share(self, footprint_bytes: np.ndarray) -> np.ndarray:
        """``m(F)`` of each footprint ``F`` (bytes): the share of a model's weights read from
        beyond the caches on every call (module docstring). Same shape as the input."""
        return missed_share(np.asarray(footprint_bytes, dtype=float), self.capacity_bytes,
                            self.full_bytes)  # fmt: skip

    @property
    def streams(self) -> bool:
        """Whether any class pays for streaming (a device whose caches held every probed
        footprint records zero rates)."""
        return any(v > 0 for _, v in self.ms_per_byte)

    def extra_ms(
        self,
        weight_bytes: np.ndarray,
        footprint_bytes: np.ndarray,
        blocked: np.ndarray,
        alone_paid: bool = True,
    ) -> np.ndarray:
        """``Δm`` per unit (ms): ``s_class · w · (m(F) − m(w))`` with ``w`` the unit's weight
        bytes, ``F`` its model's footprint (bytes, one value per unit), ``m`` the missed
        share (:meth:`missed_share`) and the class from ``blocked`` (bool per unit). A unit
        measured alone already read the share ``m(w)`` of its own weights from beyond the
        caches (a classifier larger than the cache, say), so only the rest is extra in a
        model; ``alone_paid=False`` charges ``s_class · w · m(F)`` (predictors calibrated
        before 2026-12-04). Shape ``(n_units,)``."""
        w = np.asarray(weight_bytes, dtype=float)
        share = self.missed_share(footprint_bytes)
        if alone_paid:
            share = np.clip(share - self.missed_share(w), 0.0, None)
        rate = np.where(np.asarray(blocked, dtype=bool), self.rate("blocked"), self.rate("other"))
        return rate * w * share

    def describe(self) -> str:
        rates = ", ".join(f"{k} {v * 1e6 * 1024:.1f} ns/KiB" for k, v in self.ms_per_byte)
        if not self.streams:
            return f"weight streaming: none up to {self.probed_max_bytes / 2**20:.0f} MiB"
        where = f"beyond {self.capacity_bytes / 2**20:.1f} MiB of weights"
        if self.full_bytes is not None:
            where += (
                ", all of them (a step)"
                if self.full_bytes == self.capacity_bytes
                else f", all of them from {self.full_bytes / 2**20:.1f} MiB"
            )
        return (
            f"weight streaming: {where}, {rates} (probed to "
            f"{self.probed_max_bytes / 2**20:.0f} MiB)"
        )

    def to_dict(self) -> dict:
        return {
            "capacity_bytes": self.capacity_bytes,
            "ms_per_byte": dict(self.ms_per_byte),
            "probed_max_bytes": self.probed_max_bytes,
            "samples": [list(s) for s in self.samples],
            **({"full_bytes": self.full_bytes} if self.full_bytes is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> WeightStreamingRule:
        return cls(
            capacity_bytes=float(d["capacity_bytes"]),
            ms_per_byte=tuple(d["ms_per_byte"].items()),
            probed_max_bytes=float(d.get("probed_max_bytes", 0.0)),
            samples=tuple(tuple(s) for s in d.get("samples", ())),
            full_bytes=float(d["full_bytes"]) if d.get("full_bytes") is not None else None,
        )


def missed_share(
    footprint_bytes: np.ndarray, capacity_bytes: float, full_bytes: float | None
) -> np.ndarray:
    """``m(F)``: ``(1 − C/F)⁺`` without ``full_bytes`` (``C₁``), else ``clip((F − C)/(C₁ −
    C), 0, 1)``, and ``F > C`` for a step (``C₁ = C``). Same shape as ``footprint_bytes``."""
    f = np.maximum(np.asarray(footprint_bytes, dtype=float), 1.0)
    if full_bytes is None:
        return np.clip(1.0 - capacity_bytes / f, 0.0, None)
    if full_bytes <= capacity_bytes:
        return (f > capacity_bytes).astype(float)
    return np.clip((f - capacity_bytes) / (full_bytes - capacity_bytes), 0.0, 1.0)


def streaming_chain(channels: int, layers: int) -> nn.Module:
    """``layers`` blocks of 1x1 conv (``channels -> channels``, no bias) + BN + ReLU, each
    with its own weights; input shape ``(1, channels, 1, 1)``."""
    blocks = []
    for _ in range(layers):
        blocks += [nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                   nn.ReLU()]  # fmt: skip
    return nn.Sequential(*blocks).eval()


def probe_weight_streaming(
    measure_model: Callable[[nn.Module, torch.Tensor], float],
    classes: Mapping[str, int],
    layers: Sequence[int] = CHAIN_LAYERS,
    repeats: int = 3,
) -> WeightStreamingRule:
    """Measure :func:`streaming_chain` of each class's channel count at each length in
    ``layers`` (``measure_model(model, x) -> ms`` per call; the median of ``repeats``
    measurements, each of which may build its own session: a session's buffers can land
    unluckily) and fit the rule (:func:`fit_streaming`). ``classes``: ``{class:
    channels}``, e.g. ``{"blocked": 400, "other": 401}`` for a device with a blocked
    layout."""
    samples = []
    with torch.no_grad():
        for kernel_class, channels in classes.items():
            x = torch.randn(1, channels, 1, 1)
            for k in layers:
                chain = streaming_chain(channels, k)
                ms = sorted(measure_model(chain, x) for _ in range(repeats))[repeats // 2]
                per_layer_ms = ms / k
                samples.append((kernel_class, float(k * channels * channels * WEIGHT_BYTES),
                                float(per_layer_ms)))  # fmt: skip
    return fit_streaming(samples)


def fit_streaming(
    samples: Sequence[tuple[str, float, float]], shapes: Sequence[str] = SHAPES
) -> WeightStreamingRule:
    """Fit the capacity, each class's ``s`` and the missed share's shape to probe samples
    ``(class, footprint F_K, ms per layer y_K)`` of chains of ``K`` layers of ``w`` bytes
    each (``F_K = K·w``):

        y_K = h + o/K + s · w · m(F_K)

    ``h`` is a layer's own latency, ``o`` the chain's per-call overhead and ``m`` the missed
    share of one of ``shapes`` (module docstring). For each candidate ``m`` (a capacity
    ``C`` on a log grid over the probed footprints, and for a ramp its end ``C₁`` from
    ``C`` to 16·C), every class is a non-negative least-squares fit on relative residuals;
    the candidate with the smallest summed residual wins (one capacity: the caches are the
    device's). Between shapes the smaller AIC wins, ``n·ln(RSS/n) + 2p`` with ``p`` the
    fitted parameters (a ramp has one more), so a ramp must fit better than its extra
    parameter explains. A hyperbolic capacity starts at two layers' footprint: a smaller
    one cannot be told from the per-call overhead, and reads as two layers. Rates of 0 mean
    no streaming cost was seen (under 1% of a layer's latency at the largest chain)."""
    from scipy.optimize import nnls

    unknown = set(shapes) - set(SHAPES)
    if unknown or not shapes:
        raise InputError(f"streaming shapes are {', '.join(SHAPES)}; got {sorted(unknown)}")
    by_class: dict[str, list[tuple[float, float]]] = {}
    for kernel_class, footprint, ms in samples:
        by_class.setdefault(kernel_class, []).append((float(footprint), float(ms)))
    if not by_class or any(len(v) < 4 for v in by_class.values()):
        raise InputError("a weight streaming fit needs 4 or more chain lengths per class")
    footprints = [f for v in by_class.values() for f, _ in v]
    lo, hi = min(footprints), max(footprints)
    candidates: list[tuple[str, float, float | None]] = []
    if "hyperbolic" in shapes:
        # below two layers, (1 − C/F) is 1 − 1/K on every chain: the per-call overhead's shape
        candidates += [("hyperbolic", c, None) for c in np.geomspace(2 * lo, hi, 96)]
    if "ramp" in shapes:
        candidates += [("ramp", c, c * m) for c in np.geomspace(lo, hi, 64)
                       for m in (1.0, *np.geomspace(1.25, 16.0, 13))]  # fmt: skip

    def fit(capacity: float, full: float | None) -> tuple[float, dict[str, float]]:
        residual, rates = 0.0, {}
        for kernel_class, rows in by_class.items():
            f = np.array([r[0] for r in rows])
            y = np.array([r[1] for r in rows])
            layer_bytes = f.min()
            k = f / layer_bytes
            A = np.c_[np.ones_like(f), 1 / k, layer_bytes * missed_share(f, capacity, full)]
            coef, norm = nnls(A / y[:, None], np.ones_like(y))
            residual += norm**2
            # a cost under 1% of a layer's latency at the largest footprint is no cost
            seen = A[:, 2].max() * coef[2] > 0.01 * y.min()
            rates[kernel_class] = float(coef[2]) if seen else 0.0
        return residual, rates

    n = len(footprints)
    best: dict[str, tuple[float, float, float | None, dict[str, float]]] = {}
    for shape, capacity, full in candidates:
        residual, rates = fit(float(capacity), full)
        if shape not in best or residual < best[shape][0] - 1e-12:
            best[shape] = (residual, float(capacity), full, rates)
    params = {"hyperbolic": 3 * len(by_class) + 1, "ramp": 3 * len(by_class) + 2}
    aic = {k: n * np.log(max(v[0], 1e-12 * n) / n) + 2 * params[k] for k, v in best.items()}
    shape = min(aic, key=aic.get)
    _, capacity, full, rates = best[shape]
    return WeightStreamingRule(
        capacity_bytes=capacity,
        ms_per_byte=tuple(rates.items()),
        probed_max_bytes=hi,
        samples=tuple(samples),
        full_bytes=None if full is None else float(full),
    )
