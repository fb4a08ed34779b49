"""Saving and loading fitted predictors without trusting pickles across versions.

A predictor file (``.json``) holds: format and schema version, the scikit-learn and ttmpd
versions it was fitted with, the LUT path (relative to the file when possible) and a digest
of the LUT's keys and latencies, the predictor's parameters, its calibration coefficients,
its fusion, the feature names and target form of the regressor, and the fitted regressor as
a base64 pickle.

On load, the pickle is used only when the scikit-learn version, the features and the target
form match and the LUT (if it is present) still has the same digest. Otherwise the predictor
is refitted from the LUT, which stays the source of truth; the calibration (plain numbers)
carries over. If a refit is needed and the LUT is missing, :class:`~ttmpd.errors.LutError`
says which file to provide.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import sklearn

from .._io import atomic_path
from .._version import __version__
from ..errors import LutError
from ._features import FEATURE_NAMES
from ._predictor import LatencyPredictor
from ._table import LatencyTable

logger = logging.getLogger(__name__)

FORMAT = "ttmpd.predictor"
SCHEMA_VERSION = 1
#: What the pickled regressor maps to what; a file with another form is refitted.
TARGET = "log(latency_ms) - log(unit_work(blocked_layout) + work_offset)"


def table_digest(table: LatencyTable) -> str:
    """sha256 over the sorted (key, latency_ms) pairs of a table."""
    h = hashlib.sha256()
    for key, latency in sorted(zip(table.frame["key"], table.frame["latency_ms"], strict=True)):
        h.update(f"{key}={latency!r}\n".encode())
    return h.hexdigest()


def save_predictor(
    predictor: LatencyPredictor, path: str | os.PathLike, table: LatencyTable, lut_path: str
) -> Path:
    """Write ``predictor`` (fitted on ``table``, stored at ``lut_path``) to ``path``."""
    predictor._check_fitted()
    path = Path(path)
    lut = Path(lut_path).resolve()
    try:
        lut_ref = os.path.relpath(lut, path.resolve().parent)
    except ValueError:  # another drive
        lut_ref = str(lut)
    payload = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "sklearn_version": sklearn.__version__,
        "ttmpd_version": __version__,
        "lut_path": lut_ref,
        "lut_digest": table_digest(table),
        "params": predictor.get_params(),
        "calibration": list(predictor.calibration_),
        "second_slope": predictor.second_slope_,
        "call_overhead_ms": predictor.call_overhead_ms_,
        "reorders_priced": predictor.reorders_priced_,
        "memory_priced": predictor.memory_priced_,
        "memory_scale": predictor.memory_scale_,
        "weight_ms_per_byte": predictor.weight_ms_per_byte_,
        "calibration_models": predictor.calibration_models_,
        "calibration_loo": [float(v) for v in predictor.calibration_loo_],
        "fusion": predictor.fusion_,
        "features": list(FEATURE_NAMES),
        "target": TARGET,
        "estimator_pickle": base64.b64encode(pickle.dumps(predictor.estimator_)).decode(),
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1))
    return path


def load_predictor(path: str | os.PathLike, lut: str | os.PathLike | None = None):
    """``(predictor, table)`` from a file written by :func:`save_predictor` (see module doc).

    ``lut`` overrides the stored LUT path.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LutError(f"cannot read predictor {path}: {exc}; refit with ttmpd lut fit") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LutError(f"{path} is not a ttmpd predictor file; create one with ttmpd lut fit")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise LutError(
            f"{path} has predictor schema {payload.get('schema_version')}, this ttmpd reads "
            f"{SCHEMA_VERSION}; refit with ttmpd lut fit"
        )
    lut_path = Path(lut) if lut else (path.parent / payload["lut_path"])
    table = LatencyTable.load(lut_path) if lut_path.is_file() else None
    same_sklearn = payload["sklearn_version"] == sklearn.__version__
    same_lut = table is None or table_digest(table) == payload["lut_digest"]
    same_form = (payload.get("features"), payload.get("target")) == (list(FEATURE_NAMES), TARGET)
    params = dict(payload["params"])
    if "blocked_slope" in params:  # files before the parameter was renamed
        params["blocked_layout"] = params.pop("blocked_slope")
    # files from before 2026-12-02 priced reorders unit by unit, and were calibrated so
    params.setdefault("reorder_graph", False)
    params.setdefault("memory_alone", False)  # calibrated before 2026-12-04: m(F) in full
    predictor = LatencyPredictor(**params)
    if same_sklearn and same_lut and same_form and table is not None:
        predictor.fit_from_state(pickle.loads(base64.b64decode(payload["estimator_pickle"])), table)
    else:
        if table is None:
            why = (
                f"it was fitted with scikit-learn {payload['sklearn_version']} "
                f"(this is {sklearn.__version__})"
                if not same_sklearn
                else "it was fitted by an older ttmpd with other features"
                if not same_form
                else "exact LUT hits need the table"
            )
            raise LutError(
                f"predictor {path} needs its LUT {lut_path}, which is missing ({why}); "
                "pass --lut PATH"
            )
        reason = (
            "scikit-learn version changed"
            if not same_sklearn
            else "the features changed"
            if not same_form
            else "the LUT changed"
        )
        logger.warning("refitting predictor %s from %s: %s", path, lut_path, reason)
        predictor.fit(table)
    predictor.calibration_ = tuple(float(v) for v in payload["calibration"])
    # "aligned_slope": the same slope under its name before 2026-12-01
    second = payload.get("second_slope", payload.get("aligned_slope", predictor.calibration_[0]))
    predictor.second_slope_ = float(second)
    # the overhead the calibration was fitted with (0: files from before it was subtracted)
    predictor.call_overhead_ms_ = float(payload.get("call_overhead_ms", 0.0))
    # whether it priced layout reorders (files from before 2026-12-02: it did not)
    predictor.reorders_priced_ = bool(payload.get("reorders_priced", False))
    # and weight streaming (files from before it was probed: no)
    predictor.memory_priced_ = bool(payload.get("memory_priced", False))
    predictor.memory_scale_ = float(payload.get("memory_scale", 1.0))
    # and the in-model weight cost (files from before 2026-12-04: none)
    predictor.weight_ms_per_byte_ = float(payload.get("weight_ms_per_byte", 0.0))
    # files from before 2026-12-01 hold neither: None for a calibrated one (count unknown)
    calibrated = predictor.calibration_ != (1.0, 0.0, 0.0) or predictor.call_overhead_ms_ > 0
    predictor.calibration_models_ = payload.get("calibration_models", None if calibrated else 0)
    predictor.calibration_loo_ = np.asarray(payload.get("calibration_loo", []), dtype=float)
    return predictor, table
