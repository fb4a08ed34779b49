"""Latency lookup tables: storage, validation, merging, and building them by profiling."""

from ._build import ProfileInterrupted as ProfileInterrupted
from ._build import ProfileResult as ProfileResult
from ._build import journal_path as journal_path
from ._build import profile_model as profile_model
from ._schema import COLUMNS as COLUMNS
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._schema import LutMeta as LutMeta
from ._schema import config_from_row as config_from_row
from ._schema import make_row as make_row
from ._table import LatencyTable as LatencyTable

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "LatencyTable",
    "LutMeta",
    "ProfileInterrupted",
    "ProfileResult",
    "config_from_row",
    "journal_path",
    "make_row",
    "profile_model",
]
