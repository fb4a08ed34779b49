"""The backend a table was measured with, rebuilt from its fingerprint."""

from __future__ import annotations

import logging

from ..profiler import BackendBase, BackendConfig, TimingConfig, get_backend
from ._drift import TableCheck, check_table
from ._table import LatencyTable

logger = logging.getLogger(__name__)


def backend_for_table(table: LatencyTable) -> BackendBase:
    """A backend with the table's settings; warns if this device differs from the table's."""
    fp = table.fingerprint
    config = BackendConfig(
        threads=fp.threads,
        inter_op_threads=fp.inter_op_threads,
        provider=fp.provider or "CPUExecutionProvider",
        graph_optimization=fp.graph_optimization or "all",
    )
    backend = get_backend(fp.backend, config)
    backend.require_available()
    diffs = fp.differences(backend.fingerprint())
    if diffs:
        logger.warning("measuring on another device than the table's: %s", "; ".join(diffs))
    return backend


def recheck_table(table: LatencyTable, n_anchors: int = 16, rounds: int = 3) -> TableCheck:
    """:func:`~ttmpd.lut._drift.check_table` on the table's own backend and timing settings."""
    backend = backend_for_table(table)
    timing = TimingConfig(**table.meta.timing)  # as the rows were measured
    return check_table(table, lambda c: backend.measure(c, timing).median_ms, n_anchors, rounds)
