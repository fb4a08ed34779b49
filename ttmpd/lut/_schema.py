"""The latency-table schema (version :data:`SCHEMA_VERSION`).

One row per measured unit configuration. Columns, in order:

``key`` (str)
    Canonical configuration string (:attr:`ttmpd.profiler.UnitConfig.key`); unique.
configuration (one column per :class:`~ttmpd.profiler.UnitConfig` field)
    ``op, batch, in_channels, out_channels, in_h, in_w, out_h, out_w, kernel_h, kernel_w,
    stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups`` (int),
    ``bias, bn`` (bool), ``act`` (str), ``n_inputs`` (int), ``broadcast, ceil_mode`` (bool),
    ``dtype`` (str), ``layout`` (str), ``heads`` (int).
derived (int)
    ``macs, params, input_elements, output_elements`` — functions of the configuration,
    stored so that tables can be inspected and fitted without ttmpd.
measurement
    ``latency_ms`` (median), ``p10_ms``, ``p90_ms`` (float, ms per call), ``samples`` (int),
    ``spread`` = (p90 - p10) / median (float), ``unstable`` (bool: spread stayed above the
    threshold after re-measuring), ``measured_at`` (ISO-8601 UTC str).

Metadata (:class:`LutMeta`) travels with the table: schema version, ttmpd version, creation
and update times, the device fingerprint (backend, CPU, cores, threads, library versions,
GPU, provider), the backend's unit fusion (how ops were grouped into units), the device
rules its probe found (:class:`~ttmpd.profiler.DeviceRules`: blocked layouts, native conv
paths), the timing and grid settings, and the models profiled into it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields

from ..profiler import DeviceFingerprint, DeviceRules, Timing, UnitConfig
from ..profiler._units import OPTIONAL_FIELDS

SCHEMA_VERSION = 2
#: Versions this ttmpd reads. Version 1 tables lack ``layout`` and ``heads`` (added for
#: transformer units): they load with the defaults (``nchw``, 1), their keys unchanged.
READABLE_VERSIONS = (1, 2)
ADDED_COLUMNS: dict[str, object] = dict(OPTIONAL_FIELDS)

CONFIG_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(UnitConfig))
DERIVED_COLUMNS = ("macs", "params", "input_elements", "output_elements")
MEASURE_COLUMNS = (
    "latency_ms",
    "p10_ms",
    "p90_ms",
    "samples",
    "spread",
    "unstable",
    "measured_at",
)
COLUMNS: tuple[str, ...] = ("key", *CONFIG_COLUMNS, *DERIVED_COLUMNS, *MEASURE_COLUMNS)

_BOOL = {"bias", "bn", "broadcast", "ceil_mode", "unstable"}
_STR = {"key", "op", "act", "dtype", "layout", "measured_at"}
_FLOAT = {"latency_ms", "p10_ms", "p90_ms", "spread"}
COLUMN_KINDS: dict[str, str] = {
    c: "bool" if c in _BOOL else "str" if c in _STR else "float" if c in _FLOAT else "int"
    for c in COLUMNS
}


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LutMeta:
    """Metadata of a latency table (see module docstring)."""

    fingerprint: DeviceFingerprint
    schema_version: int = SCHEMA_VERSION
    ttmpd_version: str = ""
    created_at: str = ""
    updated_at: str = ""
    timing: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    models: tuple[str, ...] = ()
    fusion: str = "none"
    rules: dict = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.fingerprint.backend

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "ttmpd_version": self.ttmpd_version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "backend": self.backend,
            "fingerprint": self.fingerprint.to_dict(),
            "timing": dict(self.timing),
            "grid": dict(self.grid),
            "models": list(self.models),
            "fusion": self.fusion,
            "rules": dict(self.rules),
        }

    @classmethod
    def from_dict(cls, d: dict) -> LutMeta:
        return cls(
            fingerprint=DeviceFingerprint.from_dict(d["fingerprint"]),
            schema_version=int(d["schema_version"]),
            ttmpd_version=str(d.get("ttmpd_version", "")),
            created_at=str(d.get("created_at", "")),
            updated_at=str(d.get("updated_at", "")),
            timing=dict(d.get("timing", {})),
            grid=dict(d.get("grid", {})),
            models=tuple(d.get("models", ())),
            fusion=str(d.get("fusion", "none")),
            rules=dict(d.get("rules") or {}),
        )

    @property
    def device_rules(self) -> DeviceRules | None:
        """The backend's probed :class:`~ttmpd.profiler.DeviceRules` (None: a table built
        before rules were probed)."""
        return DeviceRules.from_dict(self.rules) if self.rules else None


def make_row(config: UnitConfig, timing: Timing, measured_at: str | None = None) -> dict:
    """One table row (a dict over :data:`COLUMNS`) for a measured configuration."""
    row: dict = {"key": config.key}
    row.update({c: getattr(config, c) for c in CONFIG_COLUMNS})
    row.update(
        macs=config.macs,
        params=config.params,
        input_elements=config.input_elements,
        output_elements=config.output_elements,
        latency_ms=timing.median_ms,
        p10_ms=timing.p10_ms,
        p90_ms=timing.p90_ms,
        samples=timing.samples,
        spread=timing.spread,
        unstable=timing.unstable,
        measured_at=measured_at or utc_now(),
    )
    return row


def config_from_row(row: dict) -> UnitConfig:
    """Rebuild the :class:`UnitConfig` of a table row (validates it)."""
    kwargs = {}
    for c in CONFIG_COLUMNS:
        kind, value = COLUMN_KINDS[c], row[c]
        kwargs[c] = bool(value) if kind == "bool" else str(value) if kind == "str" else int(value)
    if kwargs["act"] in ("nan", "None"):
        kwargs["act"] = ""
    return UnitConfig(**kwargs)
