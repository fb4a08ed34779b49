"""Choosing the unit regressor by cross-validation on a real LUT."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from ._predictor import REGRESSORS, LatencyPredictor
from ._table import LatencyTable


def cross_validate_regressors(
    table: LatencyTable,
    names: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """K-fold scores of each regressor on held-out LUT rows (exact hits disabled).

    Columns: ``regressor``, ``mape_pct`` (mean |pred − y| / y), ``within10_pct`` and
    ``within5_pct`` (share of held-out rows within ±10% / ±5%), ``fit_s`` (mean fit time).
    """
    frame = table.frame.reset_index(drop=True)
    y = frame["latency_ms"].to_numpy()
    rows = []
    for name in names or REGRESSORS.names():
        errors, fit_s = np.empty(len(frame)), []
        for train, test in KFold(folds, shuffle=True, random_state=seed).split(frame):
            start = time.perf_counter()
            model = LatencyPredictor(regressor=name, exact_hits=False, random_state=seed)
            model.fit(LatencyTable(frame.iloc[train], table.meta))  # the backend's features
            fit_s.append(time.perf_counter() - start)
            errors[test] = np.abs(model.predict(frame.iloc[test]) - y[test]) / y[test]
        rows.append(
            {
                "regressor": name,
                "mape_pct": 100 * float(errors.mean()),
                "within10_pct": 100 * float((errors <= 0.10).mean()),
                "within5_pct": 100 * float((errors <= 0.05).mean()),
                "fit_s": float(np.mean(fit_s)),
            }
        )
    return pd.DataFrame(rows).sort_values("mape_pct", ignore_index=True)
