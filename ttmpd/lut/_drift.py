"""Keep a latency table on one time base when it is extended later.

A shared host does not run at one speed for hours. Re-measuring rows of ONNX Runtime LUTs
one session later gave 1.17x the stored latency for the channel-step grid but 1.49x for
rows that an extension had added in between: the two batches disagreed by 27%, and a
search exploited the batch that looked cheaper (misaligned channel counts), landing 11-23%
slower than predicted. Per-call overhead drifts more than compute (a global pool: 1.85x; a
64-channel conv: 1.23x), so one ratio does not fit; an affine map does.

Before and after measuring new rows into an existing table, the profiler re-measures a few
*anchor* rows spread over the table's latency range (:func:`remeasure`) and fits
``stored_ms ≈ slope · now_ms + offset_ms`` (:func:`fit_drift`; Theil-Sen, robust to a
disturbed anchor). The new rows are mapped with it only if both checks show the same drift:
the host's speed also flips for seconds at a time, and one check caught in such a burst
(1.37x, then 1.0x a minute later) would have shifted every new row by 24%.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..profiler import UnitConfig
from ._table import LatencyTable

#: Below this median relative change of the anchors, the table is left as it is.
DRIFT_TOLERANCE = 0.05
#: The checks before and after an extension must agree this closely for a map to apply.
AGREEMENT = 0.10


@dataclass(frozen=True)
class DriftMap:
    """``stored_ms = slope · now_ms + offset_ms``, fitted on ``anchors`` re-measured rows.

    ``before_ratio`` and ``after_ratio`` are the medians of ``now / stored`` over the
    anchors re-measured before and after the new rows (1.4: the device now runs them 1.4x
    slower than when they were stored). The map is fitted on the mean of both checks.
    """

    slope: float
    offset_ms: float
    before_ratio: float
    after_ratio: float
    anchors: int

    @property
    def median_ratio(self) -> float:
        """The mean of the two checks' median ``now / stored`` ratios."""
        return (self.before_ratio + self.after_ratio) / 2

    @property
    def drifted(self) -> bool:
        return abs(self.median_ratio - 1.0) > DRIFT_TOLERANCE

    @property
    def steady(self) -> bool:
        """Both checks drifted the same way and agree within :data:`AGREEMENT`: the drift
        lasted through the extension rather than being a passing burst."""
        both = all(abs(r - 1.0) > DRIFT_TOLERANCE for r in (self.before_ratio, self.after_ratio))
        same_side = (self.before_ratio - 1.0) * (self.after_ratio - 1.0) > 0
        return both and same_side and abs(self.before_ratio / self.after_ratio - 1) <= AGREEMENT

    @property
    def applies(self) -> bool:
        """New rows are mapped: the device drifted, and steadily."""
        return self.drifted and self.steady

    def apply(self, latency_ms: float) -> float:
        """A latency measured now, on the table's time base (kept positive)."""
        mapped = self.slope * latency_ms + self.offset_ms
        return float(max(mapped, 0.05 * latency_ms))


def anchor_configs(table: LatencyTable, n: int = 16) -> list[UnitConfig]:
    """``n`` rows evenly spaced over the table's sorted latencies (deterministic)."""
    frame = table.frame.sort_values("latency_ms", kind="stable")
    if len(frame) == 0:
        return []
    picks = np.unique(np.linspace(0, len(frame) - 1, min(n, len(frame))).round().astype(int))
    configs = {c.key: c for c in table.configs()}
    return [configs[k] for k in frame["key"].to_numpy()[picks]]


def remeasure(
    anchors: list[UnitConfig], measure_ms: Callable[[UnitConfig], float], rounds: int = 1
) -> np.ndarray:
    """Latency (ms) of each anchor now: the median of ``rounds`` interleaved sweeps."""
    sweeps = [[measure_ms(c) for c in anchors] for _ in range(max(rounds, 1))]
    return np.median(np.asarray(sweeps, dtype=float), axis=0)


def fit_drift(stored: np.ndarray, before: np.ndarray, after: np.ndarray) -> DriftMap:
    """The map from anchors' latencies stored and re-measured before and after (ms)."""
    from scipy.stats import theilslopes

    now = (before + after) / 2
    slope = float(theilslopes(stored, now)[0])
    offset = float(np.median(stored - slope * now))  # robust too, unlike the mean-based one
    if not slope > 0:  # degenerate spread: fall back to a pure ratio
        slope, offset = float(np.median(stored / now)), 0.0
    return DriftMap(
        slope=slope,
        offset_ms=offset,
        before_ratio=float(np.median(before / stored)),
        after_ratio=float(np.median(after / stored)),
        anchors=len(stored),
    )
