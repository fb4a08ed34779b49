"""Keep a latency table on one time base when it is extended later.

A shared host does not run at one speed for hours, and rows measured in different sessions
disagree; a search then exploits whichever batch looks cheaper. Per-call overhead drifts
more than compute, so the map between time bases is affine, not one ratio
(docs/design/measurement.md).

Before and after measuring new rows into an existing table, the profiler re-measures a few
*anchor* rows spread over the table's latency range (:func:`remeasure`) and fits
``stored_ms ≈ slope · now_ms + offset_ms`` (:func:`fit_drift`; Theil-Sen, robust to a
disturbed anchor). The new rows are mapped with it only if both checks show the same drift:
the host's speed also flips for seconds at a time, and one check caught in such a burst
would shift every new row.

:func:`check_table` asks the same question of a whole table before it is used: are its
rows still what the device does now, and do they still agree with each other? A uniform
change is absorbed by the calibration slope of whole-model predictions; rows that drifted
by different factors are not, and call for re-profiling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
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


#: Rows that disagree by less than the predictor's accuracy goal (±10%) do not matter: the
#: spread (``p75 / p25 - 1`` of the anchors' ``now / stored``) a table may show and still
#: pass, whatever the device.
CONSISTENCY = 0.10
#: How many times the check's own re-measurement spread (between its sweeps, seconds apart)
#: the anchors' spread must exceed before rows are said to have moved apart: a margin for
#: comparing one spread with another, not a figure of any host.
NOISE_MARGIN = 2.0


@dataclass(frozen=True)
class TableCheck:
    """Anchor rows of a table re-measured now (:func:`check_table`).

    ``ratios = now_ms / stored_ms`` per anchor, ``now_ms`` the median of ``sweeps_ms``
    (one tuple per sweep, anchors in ``keys`` order). ``noise`` is the check's own floor:
    the median over pairs of sweeps of the spread of their ratios, i.e. how far the rows
    move against each other between two re-measurements on this device now. The bound on
    ``spread`` is ``max(CONSISTENCY, NOISE_MARGIN · noise)``. ``verdict``:

    * ``"ok"``: spread within the bound, median ratio within ``±DRIFT_TOLERANCE`` of 1;
    * ``"drifted"``: spread within the bound; the device runs every row about
      ``median_ratio`` times its stored latency, which the slope of a whole-model
      calibration measured now absorbs;
    * ``"inconsistent"``: spread above the bound: rows drifted by different factors (rows
      measured at different times on a shared host, or a changed library or setting).
      No calibration slope fixes that: re-profile;
    * ``"unsteady"``: spread within the bound only because the device's speed moved
      between the check's own sweeps by more than ``CONSISTENCY / NOISE_MARGIN``: the
      check cannot tell rows apart at the accuracy goal now; check again when the device
      is idle (or with more rounds).
    """

    keys: tuple[str, ...]
    stored_ms: tuple[float, ...]
    now_ms: tuple[float, ...]
    sweeps_ms: tuple[tuple[float, ...], ...] = ()

    @property
    def ratios(self) -> np.ndarray:
        return np.asarray(self.now_ms) / np.asarray(self.stored_ms)

    @property
    def median_ratio(self) -> float:
        return float(np.median(self.ratios))

    @property
    def spread(self) -> float:
        """``p75 / p25 - 1`` of the ratios: 0 when every anchor drifted alike."""
        return _spread(self.ratios)

    @property
    def noise(self) -> float:
        """Median over pairs of sweeps ``i < j`` of ``spread(sweep_i / sweep_j)``; 0 with
        fewer than two sweeps."""
        sweeps = np.asarray(self.sweeps_ms, dtype=float)
        pairs = [(i, j) for i in range(len(sweeps)) for j in range(i + 1, len(sweeps))]
        if not pairs:
            return 0.0
        return float(np.median([_spread(sweeps[i] / sweeps[j]) for i, j in pairs]))

    @property
    def bound(self) -> float:
        """The spread above which rows are said to have moved apart."""
        return max(CONSISTENCY, NOISE_MARGIN * self.noise)

    @property
    def verdict(self) -> str:
        if self.spread > self.bound:
            return "inconsistent"
        if NOISE_MARGIN * self.noise > CONSISTENCY:
            return "unsteady"
        if abs(self.median_ratio - 1.0) > DRIFT_TOLERANCE:
            return "drifted"
        return "ok"


def _spread(ratios: np.ndarray) -> float:
    p25, p75 = np.quantile(ratios, [0.25, 0.75])
    return float(p75 / p25 - 1)


def check_table(
    table: LatencyTable,
    measure_ms: Callable[[UnitConfig], float],
    n_anchors: int = 16,
    rounds: int = 3,
) -> TableCheck:
    """Re-measure ``n_anchors`` rows spread over the table's latency range (the median of
    ``rounds`` interleaved sweeps, each kept for the check's noise floor) and compare them
    with their stored latency (ms)."""
    if n_anchors < 3:
        raise InputError(f"a table check needs >= 3 anchor rows, got {n_anchors}")
    if rounds < 1:
        raise InputError(f"a table check needs rounds >= 1, got {rounds}")
    anchors = anchor_configs(table, n_anchors)
    if len(anchors) < 3:
        raise InputError(f"the table has {len(table)} rows; a check needs >= 3")
    sweeps = [[float(measure_ms(c)) for c in anchors] for _ in range(rounds)]
    return TableCheck(
        keys=tuple(c.key for c in anchors),
        stored_ms=tuple(float(table.lookup(c)) for c in anchors),
        now_ms=tuple(float(v) for v in np.median(np.asarray(sweeps), axis=0)),
        sweeps_ms=tuple(tuple(s) for s in sweeps),
    )
