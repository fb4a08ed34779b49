"""``LatencyTable``: a validated DataFrame of unit latencies plus device metadata.

Stored as Parquet (metadata in the Arrow schema under the key ``ttmpd``) or CSV (metadata as
a first line ``# ttmpd-lut {json}``). Every write is atomic; every load is validated.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import atomic_path
from .._version import __version__
from ..errors import InputError, LutError
from ..profiler import DeviceFingerprint, UnitConfig
from ._schema import (
    ADDED_COLUMNS,
    COLUMN_KINDS,
    COLUMNS,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    LutMeta,
    config_from_row,
    utc_now,
)

_CSV_PREFIX = "# ttmpd-lut "
_PARQUET_KEY = b"ttmpd"
FORMATS = ("parquet", "csv")


def table_format(path: str | os.PathLike) -> str:
    """``parquet`` or ``csv`` from the file extension, else an InputError."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise InputError(
        f"unknown table format {suffix or '(none)'!r} for {path}; use .parquet or .csv"
    )


def _coerce(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(frame)))
    for col in COLUMNS:
        kind, values = COLUMN_KINDS[col], frame[col].reset_index(drop=True)
        if kind == "str":
            out[col] = values.fillna("").astype(str).replace({"nan": ""})
        elif kind == "bool":
            if values.dtype == object:
                values = values.astype(str).str.lower().map({"true": True, "false": False})
            if values.isna().any():
                raise ValueError(f"column {col!r} holds values that are not true/false")
            out[col] = values.astype(bool)
        elif kind == "int":
            out[col] = values.astype(np.int64)
        else:
            out[col] = values.astype(np.float64)
    return out


class LatencyTable:
    """Unit latencies of one device and setting (see :mod:`ttmpd.lut._schema`).

    ``frame`` is a DataFrame with the columns of :data:`COLUMNS`; ``meta`` the
    :class:`LutMeta`. Construction validates; tables are treated as immutable (methods return
    new tables).
    """

    def __init__(self, frame: pd.DataFrame, meta: LutMeta) -> None:
        if meta.schema_version in READABLE_VERSIONS and meta.schema_version < SCHEMA_VERSION:
            frame = frame.copy()  # an older table: the added columns take their defaults
            for column, default in ADDED_COLUMNS.items():
                if column not in frame.columns:
                    frame[column] = default
            meta = dataclasses.replace(meta, schema_version=SCHEMA_VERSION)
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise LutError(f"latency table lacks columns {missing}; rebuild it with ttmpd profile")
        try:
            self.frame = _coerce(frame[list(COLUMNS)])
        except (ValueError, TypeError) as exc:
            raise LutError(f"latency table has a malformed column: {exc}") from None
        self.meta = meta
        self._index: dict[str, int] | None = None
        self.validate()

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, fingerprint: DeviceFingerprint, **meta_fields) -> LatencyTable:
        now = utc_now()
        meta = LutMeta(
            fingerprint=fingerprint,
            ttmpd_version=__version__,
            created_at=now,
            updated_at=now,
            **meta_fields,
        )
        return cls(pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS}), meta)

    def with_rows(self, rows: Iterable[dict], models: Iterable[str] = ()) -> LatencyTable:
        """A new table with ``rows`` appended; rows whose key is already present are skipped."""
        rows = [r for r in rows if r["key"] not in self]
        seen: set[str] = set()
        unique = [r for r in rows if not (r["key"] in seen or seen.add(r["key"]))]
        frame = pd.concat([self.frame, pd.DataFrame(unique, columns=list(COLUMNS))])
        new_models = tuple(dict.fromkeys((*self.meta.models, *models)))
        meta = LutMeta(**{**self.meta.__dict__, "updated_at": utc_now(), "models": new_models})
        return LatencyTable(frame if unique else self.frame, meta)

    # ----- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame)

    def __contains__(self, key: object) -> bool:
        return key in self._key_index()

    def _key_index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.frame["key"])}
        return self._index

    @property
    def fingerprint(self) -> DeviceFingerprint:
        return self.meta.fingerprint

    def lookup(self, config: UnitConfig) -> float | None:
        """Measured median latency (ms) of ``config``, or None if it was not measured."""
        i = self._key_index().get(config.key)
        return None if i is None else float(self.frame["latency_ms"].iat[i])

    def configs(self) -> list[UnitConfig]:
        return [config_from_row(r) for r in self.frame.to_dict("records")]

    def summary(self) -> dict:
        """Counts per op, latency range and instability, for ``ttmpd lut show``."""
        f = self.frame
        return {
            "rows": len(f),
            "backend": self.meta.backend,
            "device": self.fingerprint.cpu_model or self.fingerprint.gpu_name,
            "threads": self.fingerprint.threads,
            "device_resource": f"device:{self.fingerprint.device_id()}",
            "schema_version": self.meta.schema_version,
            "created_at": self.meta.created_at,
            "updated_at": self.meta.updated_at,
            "models": list(self.meta.models),
            "unstable_rows": int(f["unstable"].sum()),
            "per_op": {
                op: {
                    "rows": len(g),
                    "median_ms": round(float(g["latency_ms"].median()), 5),
                    "max_ms": round(float(g["latency_ms"].max()), 5),
                }
                for op, g in f.groupby("op")
            },
            "total_measured_ms": round(float(f["latency_ms"].sum()), 4),
        }

    # ----- validation and merging ---------------------------------------------------------
    def validate(self) -> None:
        """Raise LutError on a broken table: schema version, keys, values."""
        if self.meta.schema_version != SCHEMA_VERSION:
            newer = self.meta.schema_version > SCHEMA_VERSION
            fix = "upgrade ttmpd" if newer else "re-profile it with this ttmpd"
            raise LutError(
                f"latency table has schema version {self.meta.schema_version}, this ttmpd "
                f"reads version {SCHEMA_VERSION}; {fix}"
            )
        f = self.frame
        dup = f["key"][f["key"].duplicated()]
        if len(dup):
            raise LutError(f"latency table has {len(dup)} duplicate keys (e.g. {dup.iat[0]})")
        lat = f["latency_ms"].to_numpy()
        if len(lat) and not (np.isfinite(lat).all() and (lat > 0).all()):
            raise LutError("latency table has non-positive or non-finite latency_ms values")
        for row in f.to_dict("records"):
            try:
                config = config_from_row(row)
            except (InputError, ValueError) as exc:
                raise LutError(f"latency table row {row['key']!r} is invalid: {exc}") from None
            if config.key != row["key"]:
                raise LutError(
                    f"latency table row key {row['key']!r} does not match its columns; "
                    "the file was edited or corrupted"
                )

    def merge(self, other: LatencyTable, force: bool = False) -> LatencyTable:
        """Union of two tables of the same device and settings.

        Different fingerprints raise LutError naming the differing fields, unless ``force``.
        For a key in both, the steadier measurement (smaller ``spread``) is kept.
        """
        diffs = self.fingerprint.differences(other.fingerprint)
        if diffs and not force:
            raise LutError(
                "refusing to merge tables of different devices/settings: "
                + "; ".join(diffs)
                + " (pass --force to merge anyway)"
            )
        both = pd.concat([self.frame, other.frame], ignore_index=True)
        both = both.sort_values("spread", kind="stable").drop_duplicates("key", keep="first")
        both = both.sort_index()
        models = tuple(dict.fromkeys((*self.meta.models, *other.meta.models)))
        meta = LutMeta(**{**self.meta.__dict__, "updated_at": utc_now(), "models": models})
        return LatencyTable(both, meta)

    # ----- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically as Parquet or CSV (by extension)."""
        fmt = table_format(path)
        meta_json = json.dumps(self.meta.to_dict(), sort_keys=True)
        with atomic_path(path) as tmp:
            if fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                arrow = pa.Table.from_pandas(self.frame, preserve_index=False)
                schema_meta = dict(arrow.schema.metadata or {})
                schema_meta[_PARQUET_KEY] = meta_json.encode()
                pq.write_table(arrow.replace_schema_metadata(schema_meta), tmp)
            else:
                with open(tmp, "w", newline="") as fh:
                    fh.write(_CSV_PREFIX + meta_json + "\n")
                    self.frame.to_csv(fh, index=False)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Read and validate a table written by :meth:`save`."""
        fmt = table_format(path)
        path = Path(path)
        if not path.is_file():
            raise LutError(f"latency table {path} does not exist; build one with ttmpd profile")
        try:
            if fmt == "parquet":
                frame, meta_dict = _read_parquet(path)
            else:
                frame, meta_dict = _read_csv(path)
            meta = LutMeta.from_dict(meta_dict)
        except LutError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LutError(f"{path} is not a readable ttmpd latency table: {first}") from None
        try:
            return cls(frame, meta)
        except LutError as exc:
            raise LutError(f"{path}: {exc}") from None


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise LutError(f"{path} is not a valid Parquet file ({exc}); re-profile it") from None
    raw = (arrow.schema.metadata or {}).get(_PARQUET_KEY)
    if raw is None:
        raise LutError(f"{path} is a Parquet file but not a ttmpd latency table (no metadata)")
    return arrow.to_pandas(), json.loads(raw)


def _read_csv(path: Path) -> tuple[pd.DataFrame, dict]:
    with open(path, newline="") as fh:
        first = fh.readline()
        if not first.startswith(_CSV_PREFIX):
            raise LutError(f"{path} is not a ttmpd latency table (missing the '# ttmpd-lut' line)")
        meta = json.loads(first[len(_CSV_PREFIX) :])
        frame = pd.read_csv(fh, keep_default_na=False, dtype={"act": str, "key": str})
    empty = frame.drop(columns=["act"], errors="ignore").astype(str).eq("")
    if empty.to_numpy().any():
        row = int(empty.any(axis=1).to_numpy().argmax())
        raise LutError(f"{path} row {row + 1} has empty fields; the file is truncated or edited")
    return frame, meta
