"""The backend a table was measured with, rebuilt from its fingerprint."""

from __future__ import annotations

import logging

from ..errors import InputError, TtmpdError
from ..profiler import BackendBase, BackendConfig, DeviceRules, TimingConfig, get_backend
from ._drift import TableCheck, check_table
from ._schema import LutMeta
from ._table import LatencyTable

logger = logging.getLogger(__name__)


_PROBED: dict[str, DeviceRules | None] = {}


def table_rules(meta: LutMeta) -> DeviceRules | None:
    """The device rules stored with a table; for a table built before rules were probed,
    the rules probed now on this device if it is the table's device (with a warning, once
    per process), else None (predictions then use no device rule)."""
    rules = meta.device_rules
    if rules is not None:
        return rules
    key = repr(meta.fingerprint.device_key())
    if key not in _PROBED:
        _PROBED[key] = _probe_for_old_table(meta)
    return _PROBED[key]


def _probe_for_old_table(meta: LutMeta) -> DeviceRules | None:
    try:
        backend = _table_backend(meta)
    except TtmpdError as exc:
        logger.warning("the table holds no device rules and they cannot be probed: %s", exc)
        return None
    diffs = meta.fingerprint.differences(backend.fingerprint())
    if diffs:
        logger.warning(
            "the table holds no device rules and this is not its device (%s): predicting "
            "without them; re-profile it on its device",
            "; ".join(diffs),
        )
        return None
    rules = backend.probe_rules()
    logger.warning(
        "the table was built before device rules were probed; probed them now (%.2f s): %s. "
        "Re-profile with --resume to store them",
        rules.probe_seconds,
        rules.describe().replace("\n", "; "),
    )
    return rules


def _table_backend(meta: LutMeta) -> BackendBase:
    """The table's backend with its recorded settings (raises if unavailable here)."""
    fp = meta.fingerprint
    config = BackendConfig(
        threads=fp.threads,
        inter_op_threads=fp.inter_op_threads,
        provider=fp.provider or "CPUExecutionProvider",
        graph_optimization=fp.graph_optimization or "all",
    )
    backend = get_backend(fp.backend, config)
    backend.require_available()
    return backend


def backend_for_table(table: LatencyTable, *, same_device: str = "") -> BackendBase:
    """A backend with the table's settings. Where this device differs from the table's it
    warns, or, with ``same_device`` (what needs the table's device, e.g. "calibrating"),
    raises InputError naming the differences."""
    fp = table.fingerprint
    backend = _table_backend(table.meta)
    diffs = fp.differences(backend.fingerprint())
    if diffs and same_device:
        raise InputError(
            f"the table was measured on another device ({'; '.join(diffs)}); {same_device} "
            "here would mix two devices: run it on the table's device"
        )
    if diffs:
        logger.warning("measuring on another device than the table's: %s", "; ".join(diffs))
    return backend


def recheck_table(table: LatencyTable, n_anchors: int = 16, rounds: int = 3) -> TableCheck:
    """:func:`~ttmpd.lut._drift.check_table` on the table's own backend and timing settings."""
    backend = backend_for_table(table)
    timing = TimingConfig(**table.meta.timing)  # as the rows were measured
    return check_table(table, lambda c: backend.measure(c, timing).median_ms, n_anchors, rounds)
