"""Keep a latency table on one time base when it is extended later.

A shared host does not run at one speed for hours. Re-measuring rows of ONNX Runtime LUTs
one session later gave 1.17x the stored latency for the channel-step grid but 1.49x for
rows that an extension had added in between: the two batches disagreed by 27%, and a
search exploited the batch that looked cheaper (misaligned channel counts), landing 11-23%
slower than predicted. Per-call overhead drifts more than compute (a global pool: 1.85x; a
64-channel conv: 1.23x), so one ratio does not fit; an affine map does.

Before measuring new rows into an existing table, :func:`drift_map` re-measures a few
*anchor* rows spread over the table's latency range and fits
``stored_ms ≈ slope · now_ms + offset_ms`` (Theil-Sen, robust to a disturbed anchor).
New rows are mapped with it, so old and new rows compare as if measured together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..profiler import UnitConfig
from ._table import LatencyTable

#: Below this median relative change of the anchors, the table is left as it is.
DRIFT_TOLERANCE = 0.05


@dataclass(frozen=True)
class DriftMap:
    """``stored_ms = slope · now_ms + offset_ms``, fitted on ``anchors`` re-measured rows.

    ``median_ratio`` is the median of ``now / stored`` over the anchors (1.4: the device
    now runs them 1.4x slower than when they were stored).
    """

    slope: float
    offset_ms: float
    median_ratio: float
    anchors: int

    @property
    def drifted(self) -> bool:
        return abs(self.median_ratio - 1.0) > DRIFT_TOLERANCE

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


def drift_map(
    table: LatencyTable,
    measure_ms: Callable[[UnitConfig], float],
    n_anchors: int = 16,
    rounds: int = 1,
) -> DriftMap | None:
    """Re-measure ``n_anchors`` rows of ``table`` with ``measure_ms`` and fit the map.

    Each anchor's latency now is the median of ``rounds`` interleaved sweeps over the
    anchors. Returns None for a table with fewer than 3 rows (nothing to fit).
    """
    from scipy.stats import theilslopes

    anchors = anchor_configs(table, n_anchors)
    if len(anchors) < 3:
        return None
    stored = np.array([table.lookup(c) for c in anchors], dtype=float)
    sweeps = [[measure_ms(c) for c in anchors] for _ in range(max(rounds, 1))]
    now = np.median(np.asarray(sweeps, dtype=float), axis=0)
    slope = float(theilslopes(stored, now)[0])
    offset = float(np.median(stored - slope * now))  # robust too, unlike the mean-based one
    if not slope > 0:  # degenerate spread: fall back to a pure ratio
        slope, offset = float(np.median(stored / now)), 0.0
    return DriftMap(
        slope=float(slope),
        offset_ms=float(offset),
        median_ratio=float(np.median(now / stored)),
        anchors=len(anchors),
    )
