"""Weight streaming: what a unit's weights cost inside a model too big for the caches.

A unit measured alone runs many times over the same weights, which stay in the caches.
Inside a whole model each inference sweeps every unit's weights once; when the model's
weights (its footprint ``F``, bytes) exceed what the caches keep between inferences (the
capacity ``C``), a share of them comes from memory on every call. Under a simple capacity
model, a fraction ``(1 − C/F)⁺`` of each unit's weights misses, so a unit with ``w`` bytes
of weights costs, beyond its isolated latency::

    Δm = s · w · (1 − C/F)⁺            (ms; s in ms per byte, per kernel class)

and a model ``s · (F − C)⁺`` in all when one ``s`` applies. Kernels stream their weights
at different rates: ONNX Runtime's channel-blocked (NCHWc) convs read a layout reordered
once at load, other convs run a GEMM that packs the weights on every call.

:func:`probe_weight_streaming` measures ``C`` and ``s`` on the device, from chains of
``K`` 1x1 convs (``c -> c`` on a 1x1 input, so weight traffic dominates) whose footprint
grows with ``K``; one chain per kernel class, the channel counts chosen by the backend
(:meth:`~ttmpd.profiler.BackendBase.probe_rules`). :func:`fit_streaming` fits the model
above to the per-layer latencies. The measurements behind the model are in
docs/design/measurement.md ("Weights beyond the cache").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InputError

#: Chain lengths of the probe: footprints from one layer to 64.
CHAIN_LAYERS = (1, 2, 4, 8, 16, 32, 64)
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
    extrapolated."""

    capacity_bytes: float
    ms_per_byte: tuple[tuple[str, float], ...]
    probed_max_bytes: float = 0.0
    samples: tuple[tuple[str, float, float], ...] = field(default=())

    def __post_init__(self) -> None:
        pairs = tuple(sorted((str(k), float(v)) for k, v in self.ms_per_byte))
        if any(v < 0 for _, v in pairs) or self.capacity_bytes < 0:
            raise InputError(f"weight streaming needs non-negative figures, got {pairs}")
        object.__setattr__(self, "ms_per_byte", pairs)
        object.__setattr__(self, "samples", tuple((str(c), float(f), float(m))
                                                  for c, f, m in self.samples))  # fmt: skip

    def rate(self, kernel_class: str) -> float:
        """``s`` of a class (ms per byte); a class the probe did not measure takes the
        ``"other"`` rate, else 0."""
        rates = dict(self.ms_per_byte)
        return rates.get(kernel_class, rates.get("other", 0.0))

    @property
    def streams(self) -> bool:
        """Whether any class pays for streaming (a device whose caches held every probed
        footprint records zero rates)."""
        return any(v > 0 for _, v in self.ms_per_byte)

    def extra_ms(
        self, weight_bytes: np.ndarray, footprint_bytes: np.ndarray, blocked: np.ndarray
    ) -> np.ndarray:
        """``Δm`` per unit (ms): ``s_class · w · (1 − C/F)⁺`` with ``w`` the unit's weight
        bytes, ``F`` its model's footprint (bytes, one value per unit) and the class from
        ``blocked`` (bool per unit). Shape ``(n_units,)``."""
        w = np.asarray(weight_bytes, dtype=float)
        footprint = np.maximum(np.asarray(footprint_bytes, dtype=float), 1.0)
        share = np.clip(1.0 - self.capacity_bytes / footprint, 0.0, None)
        rate = np.where(np.asarray(blocked, dtype=bool), self.rate("blocked"), self.rate("other"))
        return rate * w * share

    def describe(self) -> str:
        rates = ", ".join(f"{k} {v * 1e6 * 1024:.1f} ns/KiB" for k, v in self.ms_per_byte)
        if not self.streams:
            return f"weight streaming: none up to {self.probed_max_bytes / 2**20:.0f} MiB"
        return (
            f"weight streaming: beyond {self.capacity_bytes / 2**20:.1f} MiB of weights, "
            f"{rates} (probed to {self.probed_max_bytes / 2**20:.0f} MiB)"
        )

    def to_dict(self) -> dict:
        return {
            "capacity_bytes": self.capacity_bytes,
            "ms_per_byte": dict(self.ms_per_byte),
            "probed_max_bytes": self.probed_max_bytes,
            "samples": [list(s) for s in self.samples],
        }

    @classmethod
    def from_dict(cls, d: dict) -> WeightStreamingRule:
        return cls(
            capacity_bytes=float(d["capacity_bytes"]),
            ms_per_byte=tuple(d["ms_per_byte"].items()),
            probed_max_bytes=float(d.get("probed_max_bytes", 0.0)),
            samples=tuple(tuple(s) for s in d.get("samples", ())),
        )


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


def fit_streaming(samples: Sequence[tuple[str, float, float]]) -> WeightStreamingRule:
    """Fit ``C`` and each class's ``s`` to probe samples ``(class, footprint F_K, ms per
    layer y_K)`` of chains of ``K`` layers of ``w`` bytes each (``F_K = K·w``):

        y_K = h + o/K + s · w · (1 − C/F_K)⁺

    ``h`` is a layer's own latency and ``o`` the chain's per-call overhead. For each ``C`` on
    a log grid over the probed footprints, every class is a non-negative least-squares fit
    on relative residuals; the ``C`` with the smallest summed residual wins (one capacity:
    the caches are the device's). The grid starts at two layers' footprint: a smaller
    capacity cannot be told from the per-call overhead, and reads as two layers. Rates of 0
    mean no streaming cost was seen (under 1% of a layer's latency at the largest chain)."""
    from scipy.optimize import nnls

    by_class: dict[str, list[tuple[float, float]]] = {}
    for kernel_class, footprint, ms in samples:
        by_class.setdefault(kernel_class, []).append((float(footprint), float(ms)))
    if not by_class or any(len(v) < 4 for v in by_class.values()):
        raise InputError("a weight streaming fit needs 4 or more chain lengths per class")
    footprints = [f for v in by_class.values() for f, _ in v]
    # below two layers, (1 − C/F) is 1 − 1/K on every chain: the per-call overhead's shape
    grid = np.geomspace(2 * min(footprints), max(footprints), 96)
    best: tuple[float, float, dict[str, float]] | None = None
    for capacity in grid:
        residual, rates = 0.0, {}
        for kernel_class, rows in by_class.items():
            f = np.array([r[0] for r in rows])
            y = np.array([r[1] for r in rows])
            layer_bytes = f.min()
            k = f / layer_bytes
            A = np.c_[np.ones_like(f), 1 / k, layer_bytes * np.clip(1 - capacity / f, 0, None)]
            coef, norm = nnls(A / y[:, None], np.ones_like(y))
            residual += norm**2
            # a cost under 1% of a layer's latency at the largest footprint is no cost
            seen = A[:, 2].max() * coef[2] > 0.01 * y.min()
            rates[kernel_class] = float(coef[2]) if seen else 0.0
        if best is None or residual < best[1] - 1e-12:
            best = (float(capacity), residual, rates)
    capacity, _, rates = best
    return WeightStreamingRule(
        capacity_bytes=capacity,
        ms_per_byte=tuple(rates.items()),
        probed_max_bytes=max(footprints),
        samples=tuple(samples),
    )
