"""``LatencyPredictor``: unit latencies for configurations never measured, and whole models.

scikit-learn conventions: ``__init__`` only stores parameters, ``fit`` returns ``self`` and
sets attributes ending in ``_``, ``predict`` raises ``NotFittedError`` before ``fit``.

Unit level
    A regressor (default ``blend``: the mean of gradient boosting and extremely randomised
    trees; ``ttmpd lut fit --cv`` compares the choices on your table) maps the features of
    :mod:`ttmpd.lut._features` to the log time per unit of work::

        target = log(latency_ms) - log(work + W0)        work = unit_work(config)

    ``W0`` (``work_offset_``) is where a unit's fixed overhead equals its work-proportional
    cost, from ``latency ≈ t0 + k·work`` on the table: ``W0 = t0 / k``. The target is then
    nearly flat both for overhead-bound and for compute-bound units, and a tree ensemble,
    which predicts piecewise-constant values, interpolates a *rate* between measured channel
    counts rather than a latency (it cannot extrapolate a latency linearly). Configurations
    present in the table are returned exactly as measured (``exact_hits=True``).

    With ``blocked_layout`` on, the work of a conv that runs a blocked (NCHWc) kernel
    counts the channel padding of the device's block (``unit_work(config, blocked)``, the
    block width probed on the device and stored with the table): with a block of 16, a
    ``16->4`` conv costs what ``16->16`` does, a rate the trees cannot extrapolate from plain
    MACs. ``"auto"`` turns it on when the table's device rules hold a blocked rule.
Model level
    ``predict_model`` extracts the model's units with the table's fusion, predicts each, and
    applies the calibration ``total = a·Σ other units + a4·Σ second-slope units + b·n_units
    + c + d·W``, each unit counted without the per-call overhead ``t0`` it paid in isolation
    (fitted with :meth:`fit_calibration` on a handful of measured whole models; identity
    ``a = a4 = 1, b = c = d = 0`` until then); ``W`` is the model's weight bytes and ``d``
    what a weight byte costs in a model beyond alone (``weight_pricing``). ``a4``
    (``second_slope_``) is the slope of the convs the device runs differently inside a
    whole model, by the table's probed rules:
    with a blocked rule, convs whose channel counts qualify for the blocked kernel
    (:func:`~ttmpd.lut._features.blocked_layout_mask`), whose chains skip the layout
    conversions each isolated unit pays; else, with a native-conv rule
    (``native_conv_slope="auto"``), the convs PyTorch runs on its native path instead of
    oneDNN (:func:`~ttmpd.lut._features.native_conv_mask`), which run slower inside a whole
    model than in isolation. The measurements behind both choices are in
    docs/design/measurement.md. With a probed reorder cost (``reorder_pricing="auto"``),
    each unit also counts ``Δr_i``, its layout reorders inside a whole model minus those it
    paid alone: with ``reorder_graph=True`` (the default), whole-model predictions, the
    search's prices of whole states and the calibration count them from the model's graph
    (:func:`~ttmpd.lut._features.graph_reorder_delta_ms`); a single group's saving curve, and
    ``reorder_graph=False``, count them unit by unit
    (:func:`~ttmpd.lut._features.reorder_delta_ms`, which assumes every conv's producer
    writes the blocked layout). With a probed weight streaming cost (``memory_pricing``),
    each unit also counts ``Δm_i``, what its weights cost when the model's weights exceed
    the device's caches (:meth:`LatencyPredictor.memory_delta_ms`), less the share of its
    own weights it streamed when measured alone (``memory_alone``); ``"auto"`` keeps it
    where the calibration's leave-one-out error says it helps; ``"fit"`` (the default) lets
    the calibration scale it (``memory_scale_``, 0 leaves it out). The probed rate alone
    made three held-out models worse; the fitted scale made a fourth set better
    (docs/design/measurement.md). The calibration
    absorbs what isolated units miss or over-count: framework dispatch per op, per-call
    overhead that every isolated unit pays once, layout conversions, cache effects.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from torch import nn

from .._registry import Registry
from ..errors import InputError
from ..profiler import LayerUnit, UncoveredOp, UnitConfig, extract_units
from ._device import table_rules
from ._features import (
    FEATURE_NAMES,
    blocked_layout_mask,
    configs_frame,
    graph_reorder_delta_ms,
    native_conv_mask,
    reorder_delta_ms,
    unit_features,
    unit_work,
    weight_bytes,
)
from ._table import LatencyTable

logger = logging.getLogger(__name__)

REGRESSORS: Registry = Registry("regressor")


@REGRESSORS.register("hgb")
def _hgb(random_state: int = 0):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        max_iter=800, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=5,
        l2_regularization=1e-3, random_state=random_state,
    )  # fmt: skip


@REGRESSORS.register("gbr")
def _gbr(random_state: int = 0):
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(
        n_estimators=600, max_depth=5, learning_rate=0.05, subsample=0.9,
        random_state=random_state,
    )  # fmt: skip


@REGRESSORS.register("rf")
def _rf(random_state: int = 0):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=300, min_samples_leaf=1, random_state=random_state)


@REGRESSORS.register("extra")
def _extra(random_state: int = 0):
    from sklearn.ensemble import ExtraTreesRegressor

    return ExtraTreesRegressor(n_estimators=300, random_state=random_state)


@REGRESSORS.register("blend")
def _blend(random_state: int = 0):
    from sklearn.ensemble import VotingRegressor

    return VotingRegressor([("gbr", _gbr(random_state)), ("extra", _extra(random_state))])


@REGRESSORS.register("ridge")
def _ridge(random_state: int = 0):
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


class SplitRegressor(RegressorMixin, BaseEstimator):
    """One clone of ``estimator`` per side of a binary feature column (``X[:, column] >
    0.5``), each fitted on its own rows; one clone for both when a side has fewer than
    ``min_rows`` rows.

    The predictor splits on the blocked-layout flag: blocked and unblocked convs cost per
    unit of work at rates that differ several-fold, and a tree ensemble on the pooled rows
    splits on channel counts first wherever one class has no rows nearby (few off-grid
    rows near the top of a unit's range), pricing an unblocked count at the blocked rate.
    """

    def __init__(self, estimator=None, column: int = 0, min_rows: int = 5):
        self.estimator = estimator
        self.column = column
        self.min_rows = min_rows

    def fit(self, X, y) -> SplitRegressor:
        from sklearn.base import clone

        X, y = np.asarray(X), np.asarray(y)
        side = X[:, self.column] > 0.5
        self.estimators_ = {}
        if min(side.sum(), (~side).sum()) < self.min_rows:
            self.estimators_[None] = clone(self.estimator).fit(X, y)
        else:
            for key, rows in ((True, side), (False, ~side)):
                self.estimators_[key] = clone(self.estimator).fit(X[rows], y[rows])
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X)
        if None in self.estimators_:
            return self.estimators_[None].predict(X)
        side = X[:, self.column] > 0.5
        out = np.empty(len(X))
        for key, rows in ((True, side), (False, ~side)):
            if rows.any():
                out[rows] = self.estimators_[key].predict(X[rows])
        return out


@dataclass(frozen=True)
class ModelPrediction:
    """Predicted latency of a whole model.

    ``total_ms`` is calibrated; ``unit_sum_ms`` is the plain sum; ``breakdown`` has one row
    per unit (name, op, channels, ``latency_ms``, ``measured`` = exact LUT hit);
    ``uncovered`` lists ops no unit prices (their cost is only in the calibration).
    """

    total_ms: float
    unit_sum_ms: float
    breakdown: pd.DataFrame
    uncovered: tuple[UncoveredOp, ...]


def work_offset(latency_ms: np.ndarray, work: np.ndarray) -> float:
    """``W0 = t0 / k`` of ``latency ≈ t0 + k·work`` (see the module docstring), robustly.

    ``t0`` is the 2nd percentile of the latencies (the smallest units are all overhead);
    ``k`` is the median of ``(latency - t0) / work`` over units at least 4x slower than
    ``t0``. Falls back to the median work when fewer than 3 such units exist.
    """
    t0 = float(np.quantile(latency_ms, 0.02))
    big = latency_ms > 4 * t0
    if big.sum() < 3:
        return float(np.median(work))
    k = float(np.median((latency_ms[big] - t0) / work[big]))
    return t0 / k if k > 0 else float(np.median(work))


def unit_inputs(units: Sequence[LayerUnit]) -> list[list[int]]:
    """Each unit's producers as rows of ``units`` (-1: the model input), the ``inputs`` of
    :meth:`LatencyPredictor.reorder_delta_ms`."""
    row = {u.index: k for k, u in enumerate(units)}
    return [[row.get(i, -1) for i in u.inputs] for u in units]


def _as_frame(X) -> pd.DataFrame:
    if isinstance(X, LatencyTable):
        return X.frame
    if isinstance(X, pd.DataFrame):
        return X
    configs = list(X)
    if configs and not all(isinstance(c, UnitConfig) for c in configs):
        raise InputError("predict takes a table-shaped DataFrame or a list of UnitConfig")
    return configs_frame(configs)


class LatencyPredictor(RegressorMixin, BaseEstimator):
    """Predict unit and whole-model latency (ms) from a device LUT (see module docstring)."""

    def __init__(
        self,
        regressor: str = "blend",
        exact_hits: bool = True,
        random_state: int = 0,
        blocked_layout: bool | str = "auto",
        native_conv_slope: bool | str = "auto",
        reorder_pricing: bool | str = "auto",
        reorder_graph: bool = True,
        memory_pricing: bool | str = "fit",
        weight_pricing: bool = True,
        memory_alone: bool = True,
    ):
        self.regressor = regressor
        self.memory_pricing = memory_pricing
        self.weight_pricing = weight_pricing
        self.memory_alone = memory_alone
        self.reorder_pricing = reorder_pricing
        self.reorder_graph = reorder_graph
        self.blocked_layout = blocked_layout
        self.native_conv_slope = native_conv_slope
        self.exact_hits = exact_hits
        self.random_state = random_state

    # ----- unit level ---------------------------------------------------------------------
    def fit(self, X, y=None) -> LatencyPredictor:
        """Fit on a :class:`LatencyTable` (``y`` from it) or a table-shaped frame and ``y`` (ms)."""
        frame = _as_frame(X)
        if y is None:
            if "latency_ms" not in frame:
                raise InputError("fit needs y (latency in ms) or a table with latency_ms")
            y = frame["latency_ms"].to_numpy()
        y = np.asarray(y, dtype=float)
        if len(frame) < 5 or len(frame) != len(y):
            raise InputError(f"fit needs >= 5 rows with one latency each, got {len(frame)}")
        if not (np.isfinite(y).all() and (y > 0).all()):
            raise InputError("latencies must be positive and finite")
        meta = X.meta if isinstance(X, LatencyTable) else None
        self._set_backend_rules(meta)
        features = self._features(frame)
        work = self._work(frame)
        self.work_offset_ = work_offset(y, work)
        self.estimator_ = REGRESSORS.get(self.regressor)(self.random_state)
        if self.blocked_layout_:
            self.estimator_ = SplitRegressor(self.estimator_, FEATURE_NAMES.index("blocked"))
        self.estimator_.fit(features, np.log(y) - np.log(work + self.work_offset_))
        keys = frame["key"] if "key" in frame else configs_frame([])["key"]
        self.lut_ = dict(zip(keys, y, strict=False)) if self.exact_hits else {}
        self.n_features_in_ = features.shape[1]
        self.feature_names_ = FEATURE_NAMES
        self.fusion_ = meta.fusion if meta else "none"
        self.fingerprint_ = meta.fingerprint if meta else None
        self.calibration_ = (1.0, 0.0, 0.0)
        self.second_slope_ = 1.0
        self.calibration_models_ = 0
        self.calibration_loo_ = np.zeros(0)
        self.unit_overhead_ms_ = self._call_overhead(y)
        self.call_overhead_ms_ = 0.0  # the identity calibration is the plain unit sum
        self.reorders_priced_ = False  # likewise: reorders count once calibrated
        self.memory_priced_ = False  # and weight streaming
        self.memory_scale_ = 1.0
        self.weight_ms_per_byte_ = 0.0  # and what weights cost in a model beyond alone
        return self

    def fit_from_state(self, estimator, table: LatencyTable) -> LatencyPredictor:
        """Restore a fitted regressor (from :func:`load_predictor`) for ``table``."""
        self.estimator_ = estimator
        frame = table.frame
        y = frame["latency_ms"].to_numpy()
        self._set_backend_rules(table.meta)
        self.work_offset_ = work_offset(y, self._work(frame))
        self.lut_ = dict(zip(frame["key"], y, strict=True)) if self.exact_hits else {}
        self.n_features_in_ = len(FEATURE_NAMES)
        self.feature_names_ = FEATURE_NAMES
        self.fusion_ = table.meta.fusion
        self.fingerprint_ = table.meta.fingerprint
        self.calibration_ = (1.0, 0.0, 0.0)
        self.second_slope_ = 1.0
        self.calibration_models_ = 0
        self.calibration_loo_ = np.zeros(0)
        self.unit_overhead_ms_ = self._call_overhead(y)
        self.call_overhead_ms_ = 0.0
        self.reorders_priced_ = False
        self.memory_priced_ = False
        self.memory_scale_ = 1.0
        self.weight_ms_per_byte_ = 0.0
        return self

    def _call_overhead(self, latency_ms: np.ndarray) -> float:
        """The per-call overhead every isolated unit pays (ms): the device's probed figure
        where the table's rules hold one, else the table's fastest unit."""
        probed = self.rules_.call_overhead_ms if self.rules_ else 0.0
        return float(probed) if probed > 0 else float(np.min(latency_ms))

    def _set_backend_rules(self, meta) -> None:
        """Read the device rules of the table (:func:`~ttmpd.lut._device.table_rules`) and
        resolve the switches: ``"auto"`` is on when the probe found that rule."""
        rules = table_rules(meta) if meta is not None else None
        blocked = rules.blocked if rules is not None else None
        native = rules.native if rules is not None else None

        def switch(name: str, found: bool, also: tuple[str, ...] = ()) -> bool:
            value = getattr(self, name)
            if value == "auto" or (isinstance(value, str) and value in also):
                return found
            if not isinstance(value, bool):
                options = ", ".join(repr(v) for v in ("auto", *also))
                raise InputError(f"{name} must be {options}, True or False, got {value!r}")
            if value and not found:
                raise InputError(
                    f"{name}=True, but the table's device rules hold no such rule "
                    "(re-profile the table to probe them, or leave it 'auto')"
                )
            return value

        self.rules_ = rules
        self.blocked_layout_ = switch("blocked_layout", blocked is not None)
        self.native_conv_slope_ = switch("native_conv_slope", native is not None)
        isolation = bool(rules.isolation) if rules is not None else False
        self.reorder_pricing_ = switch(
            "reorder_pricing",
            (self.blocked_layout_ and blocked is not None and blocked.prices_reorders) or isolation,
        )
        streaming = rules.streaming if rules is not None else None
        self.memory_pricing_ = switch(
            "memory_pricing", streaming is not None and streaming.streams, also=("fit",)
        )
        self.threads_ = int(meta.fingerprint.threads) if meta else 1

    def _blocked_rule(self):
        return self.rules_.blocked if self.blocked_layout_ else None

    def _second_slope(self, frame: pd.DataFrame) -> np.ndarray:
        """Units with the second calibration slope ``a4``: convs under the blocked-layout
        rule if the device has one, else convs on the native path
        (:func:`native_conv_mask`), else none."""
        if self.blocked_layout_:
            return blocked_layout_mask(frame, self.rules_.blocked)
        if self.native_conv_slope_:
            return native_conv_mask(frame, self.rules_.native, self.threads_)
        return np.zeros(len(frame), dtype=bool)

    def reorder_delta_ms(self, X, inputs: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        """Each unit's layout-reorder cost inside a whole model minus in isolation (ms;
        :func:`~ttmpd.lut._features.reorder_delta_ms` under the table's blocked rule), less
        what the device's probe found a unit of its variant pays alone and not in a model
        (:attr:`~ttmpd.profiler.DeviceRules.isolation`), once a calibration priced them
        (``reorders_priced_``); zeros otherwise. With
        ``reorder_graph`` and the model's graph (``inputs[i]``: the rows producing unit
        ``i``'s inputs, -1 for the model input), from who writes and reads each tensor
        (:func:`~ttmpd.lut._features.graph_reorder_delta_ms`); ``X`` may stack several
        models of that graph (prunes of one model), ``len(inputs)`` rows each. Shape
        ``(n_units,)``."""
        frame = _as_frame(X)
        if not self.reorders_priced_:
            return np.zeros(len(frame))
        alone = self.rules_.isolation_ms(
            frame["op"].tolist(), frame["n_inputs"].tolist(), frame["output_elements"].tolist()
        )
        blocked = self.rules_.blocked if self.blocked_layout_ else None
        if not (self.reorder_graph and inputs is not None):
            return reorder_delta_ms(frame, blocked) - alone
        return graph_reorder_delta_ms(frame, inputs, blocked) - alone

    def memory_delta_ms(
        self, X, n_models: int = 1, footprint_bytes: float | None = None
    ) -> np.ndarray:
        """Each unit's weight streaming inside a whole model (ms), once a calibration priced
        it (``memory_priced_``), zeros otherwise: ``k · s_class · w_i · (m(F) − m(w_i))`` with
        ``k`` the calibration's scale (``memory_scale_``: 1 unless ``memory_pricing="fit"``),
        the device's probed capacity ``C`` and rates ``s``
        (:class:`~ttmpd.profiler._streaming.WeightStreamingRule`), ``w_i`` the unit's weight
        bytes (:func:`~ttmpd.lut._features.weight_bytes`) and ``F`` its model's: the sum over
        each of the ``n_models`` models stacked in ``X`` (the same number of units each), or
        ``footprint_bytes`` where given (units of a part of one model); ``m`` the probed
        missed share, of which a unit alone already paid ``m(w_i)`` (with ``memory_alone``;
        without it ``m(F)``, as before 2026-12-04). The class is
        ``blocked`` for convs under the blocked-layout rule, else ``other``. Shape
        ``(n_units,)``."""
        frame = _as_frame(X)
        if not self.memory_priced_ or not len(frame):
            return np.zeros(len(frame))
        w = weight_bytes(frame)
        if footprint_bytes is None:
            per_model = w.reshape(n_models, -1).sum(axis=1)
            footprint = np.repeat(per_model, len(frame) // n_models)
        else:
            footprint = np.full(len(frame), float(footprint_bytes))
        blocked = blocked_layout_mask(frame, self._blocked_rule())
        extra = self.rules_.streaming.extra_ms(w, footprint, blocked, self.memory_alone)
        return self.memory_scale_ * extra

    def _features(self, frame: pd.DataFrame) -> np.ndarray:
        return unit_features(frame, self.rules_ if self.blocked_layout_ else None)

    def _work(self, frame: pd.DataFrame) -> np.ndarray:
        """:func:`unit_work`, blocked-layout convs padded to their channel block if enabled."""
        rule = self._blocked_rule()
        return unit_work(frame, blocked_layout_mask(frame, rule), rule)

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("this LatencyPredictor is not fitted; call fit(table) first")

    def predict(self, X) -> np.ndarray:
        """Latency in ms per unit: measured where the LUT has the configuration."""
        self._check_fitted()
        frame = _as_frame(X)
        if len(frame) == 0:
            return np.zeros(0)
        rate = self._rates(self._features(frame))
        out = np.exp(rate) * (self._work(frame) + self.work_offset_)
        if self.lut_ and "key" in frame:
            hits = frame["key"].map(self.lut_).to_numpy(dtype=float)
            out = np.where(np.isnan(hits), out, hits)
        return out

    def _rates(self, features: np.ndarray) -> np.ndarray:
        """The regressor's log-rate per feature row, each distinct row predicted once per
        fitted regressor: a search prices the same unit configurations over and over, and a
        forest's per-call cost is most of a prediction."""
        cache = self.__dict__.get("_rate_cache")
        if cache is None or cache[0] is not self.estimator_:
            cache = self.__dict__["_rate_cache"] = (self.estimator_, {})
        known = cache[1]
        features = np.ascontiguousarray(features, dtype=float)
        keys = [row.tobytes() for row in features]
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in known and key not in first:
                first[key] = i
        if first:
            rates = self.estimator_.predict(features[list(first.values())])
            known.update(zip(first, map(float, rates), strict=True))
        return np.fromiter((known[key] for key in keys), dtype=float, count=len(keys))

    def hit_mask(self, X) -> np.ndarray:
        """True where a configuration is an exact LUT hit (none for a frame without a
        ``key`` column, as :meth:`predict` reads it)."""
        self._check_fitted()
        frame = _as_frame(X)
        if "key" not in frame:
            return np.zeros(len(frame), dtype=bool)
        return frame["key"].isin(self.lut_.keys()).to_numpy()

    # ----- model level ----------------------------------------------------------------------
    def predict_model(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibrated: bool = True,
    ) -> ModelPrediction:
        """Predicted end-to-end latency of ``model(example_input)`` with a per-unit breakdown."""
        self._check_fitted()
        extraction = extract_units(model, example_input, self.fusion_)
        configs = [u.config for u in extraction.units]
        frame = configs_frame(configs)
        latency = self.predict(frame)
        breakdown = pd.DataFrame(
            {
                "name": [u.name for u in extraction.units],
                "op": frame["op"],
                "in_channels": frame["in_channels"],
                "out_channels": frame["out_channels"],
                "in_hw": [f"{c.in_h}x{c.in_w}" for c in configs],
                "latency_ms": latency,
                "measured": self.hit_mask(frame) if len(frame) else [],
            }
        )
        if extraction.uncovered:
            names = sorted({f"{u.aten} ({u.name or '<model>'})" for u in extraction.uncovered})
            warnings.warn(
                f"{len(extraction.uncovered)} ops have no latency unit and are not priced: "
                + ", ".join(names),
                stacklevel=2,
            )
        unit_sum = float(latency.sum())
        inputs = unit_inputs(extraction.units)
        total = self.calibrated_total(frame, latency, inputs) if calibrated else unit_sum
        return ModelPrediction(total, unit_sum, breakdown, extraction.uncovered)

    def unit_slopes(self, X) -> np.ndarray:
        """Calibration slope of each unit: ``a4`` for blocked-layout convs, else ``a``."""
        self._check_fitted()
        frame = _as_frame(X)
        a = self.calibration_[0]
        if not len(frame):
            return np.zeros(0)
        return np.where(self._second_slope(frame), self.second_slope_, a)

    def scaled_units(
        self,
        X,
        latency_ms: np.ndarray | None = None,
        inputs: Sequence[Sequence[int]] | None = None,
        n_models: int = 1,
        footprint_bytes: float | None = None,
    ) -> np.ndarray:
        """Each unit's share of a calibrated whole model (ms):
        ``slope_i·(latency_i − t0 + Δr_i + Δm_i) + d·w_i``, with ``t0`` the per-call overhead each
        isolated unit paid and a whole model pays once (``call_overhead_ms_``:
        ``unit_overhead_ms_`` once calibrated, 0 before, so the identity calibration is the
        plain sum), ``Δr_i`` its layout reorders in a whole model minus alone
        (:meth:`reorder_delta_ms`, with the model's graph ``inputs`` where given) and
        ``Δm_i`` its weight streaming (:meth:`memory_delta_ms`, for ``n_models`` stacked
        models or a given ``footprint_bytes``); ``d·w_i`` what its ``w_i`` weight bytes cost
        in a model beyond alone (``weight_ms_per_byte_``, :meth:`fit_calibration`); all 0
        before a calibration. Shape ``(n_units,)``."""
        frame = _as_frame(X)
        latency = self.predict(frame) if latency_ms is None else np.asarray(latency_ms)
        own = latency - self.call_overhead_ms_ + self.reorder_delta_ms(frame, inputs)
        own = own + self.memory_delta_ms(frame, n_models, footprint_bytes)
        return self.unit_slopes(frame) * own + self.weight_ms_per_byte_ * weight_bytes(frame)

    def calibrated_totals(
        self,
        X,
        n_models: int = 1,
        latency_ms: np.ndarray | None = None,
        inputs: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Calibrated latency (ms) of ``n_models`` whole models whose units are stacked in
        ``X``, model by model, the same number each:
        ``Σ (slope_i·(latency_i − t0) + d·w_i) + b·n_units + c`` per model
        (:meth:`scaled_units`).
        ``latency_ms``: the units' already predicted latencies; ``inputs``: the graph every
        model shares (:meth:`reorder_delta_ms`). Shape ``(n_models,)``."""
        frame = _as_frame(X)
        scaled = self.scaled_units(frame, latency_ms, inputs, n_models)
        scaled = scaled.reshape(n_models, -1).sum(axis=1)
        _, b, c = self.calibration_
        return scaled + b * (len(frame) // n_models) + c

    def calibrated_total(
        self,
        X,
        latency_ms: np.ndarray | None = None,
        inputs: Sequence[Sequence[int]] | None = None,
    ) -> float:
        """Calibrated latency (ms) of one whole model given its units (``X``) and, for
        ``reorder_graph``, its graph (``inputs``, :meth:`reorder_delta_ms`)."""
        return float(self.calibrated_totals(X, 1, latency_ms, inputs)[0])

    def fit_calibration(
        self,
        models: Sequence[tuple[nn.Module, torch.Tensor]],
        measured_ms: Sequence[float],
    ) -> LatencyPredictor:
        """Fit ``total = a·S_other + a4·S_blocked + b·n_units + c + d·W`` to measured whole
        models.

        Each sum counts ``latency_i − t0 + Δr_i``: ``t0`` (``call_overhead_ms_``) is the
        per-call overhead every isolated unit paid and a whole model pays once; ``Δr_i`` the
        unit's layout reorders inside a whole model minus alone, priced at the device's probed
        reorder cost (:meth:`reorder_delta_ms`, with ``reorder_pricing``). Without it a model of
        many small units (MobileNetV3 at 32 px: ~100 units, t0 about a third of the model)
        needs an offset far below zero, which the bound on ``c`` forbids.

        ``S_blocked`` sums the predicted latencies of the second-slope units: blocked-layout
        convs (:func:`~ttmpd.lut._features.blocked_layout_mask`) with ``blocked_layout_``,
        native-path convs (:func:`~ttmpd.lut._features.native_conv_mask`) with
        ``native_conv_slope_``, else none. ``S_other`` sums those of every other unit.
        Least squares on the *relative* residuals, ``Σ_i (total_i / y_i - 1)²``, since the
        predictor is judged by relative error and the models span several-fold latencies.
        Bounds: ``a, a4, b >= 0``; ``c >= -0.5·min(y)``. A negative offset is real: each
        isolated unit pays the per-call overhead that a whole model pays once (ONNX Runtime
        on small models). Fewer parameters when the data cannot tell them apart: one slope
        (``a4 = a``) below 4 models, or when some model has no second-slope units and their
        share of the unit sum varies by at most 5 points between models; ``b = 0`` when
        every model has the same number of units (pruned variants of one architecture: it
        would duplicate ``c``); only ``a`` below 3 models.

        ``calibration_loo_`` holds each model's leave-one-out relative error (its total
        predicted by the calibration fitted on the other models, over its measurement, − 1;
        empty below 4 models): how far predictions of prunes nobody measured may miss.

        Weight streaming (``Δm_i`` in each sum, :meth:`memory_delta_ms`): with
        ``memory_pricing=True`` always counted where the table's device rules hold a
        streaming cost; with ``"auto"`` the calibration is fitted with and without it and
        keeps the one whose worst leave-one-out error is smaller (without it below 4
        models); ``memory_priced_`` says which. With ``"fit"`` each ``Δm_i`` is scaled by
        ``k`` (``memory_scale_``), chosen on the grid ``0, 0.1, …, 2`` (:data:`MEMORY_SCALES`)
        for the smallest relative residuals of the fit (``k = 0``: unpriced; below 4 models
        unpriced); its leave-one-out errors choose ``k`` again without the model left out.

        Weights in a model (``d·W``, with ``weight_pricing``): ``W`` is the model's weight
        bytes (:func:`~ttmpd.lut._features.weight_bytes`), ``d >= 0`` (``weight_ms_per_byte_``)
        what a weight byte costs inside a model beyond its unit's isolated latency, at any
        footprint: alone, a unit's weights stay in the core's nearest caches from call to
        call; in a model every other unit's pass through them. Fitted only where the models
        outnumber the coefficients, ``d`` included, by two or more (else 0), so it never
        takes a degree of freedom the slopes and the offset need.
        """
        self._check_fitted()
        if len(models) != len(measured_ms) or not models:
            raise InputError("fit_calibration needs one measured latency per model (>= 1)")
        y = np.asarray(measured_ms, dtype=float)
        if not (np.isfinite(y).all() and (y > 0).all()):
            raise InputError("measured latencies must be positive and finite")
        self.call_overhead_ms_ = self.unit_overhead_ms_
        self.reorders_priced_ = self.reorder_pricing_
        extracted = [extract_units(model, x, self.fusion_).units for model, x in models]
        options = [False, True] if self.memory_pricing_ else [False]
        fits = []
        self.memory_scale_ = 1.0
        for memory in options:
            self.memory_priced_ = memory
            A = np.asarray([self._calibration_row(units) for units in extracted], dtype=float)
            fits.append((A, _leave_one_out(A, y), memory))
        A, loo, memory = fits[-1]
        if len(fits) == 2 and self.memory_pricing == "auto":
            worst = lambda fit: np.max(np.abs(fit[1]))  # noqa: E731
            A, loo, memory = min(fits, key=worst) if len(fits[0][1]) else fits[0]
        if len(fits) == 2 and self.memory_pricing == "fit":
            A0, A1 = fits[0][0], fits[1][0]
            scale = _memory_scale(A0, A1, y) if len(y) >= LOO_MIN_MODELS else 0.0
            A, memory = A0 + scale * (A1 - A0), scale > 0
            loo = _leave_one_out_scaled(A0, A1, y)
            self.memory_scale_ = scale
        self.memory_priced_ = memory
        coef = _solve_calibration(A, y)
        self.calibration_ = (float(coef[0]), float(coef[2]), float(coef[3]))
        self.second_slope_ = float(coef[1])
        self.weight_ms_per_byte_ = float(coef[4]) / WEIGHT_COLUMN_BYTES
        self.calibration_models_ = len(y)
        self.calibration_loo_ = loo
        return self

    def _calibration_row(self, units: Sequence[LayerUnit]) -> list[float]:
        """``[S_other, S_second, n_units, 1, W]`` of one model (:meth:`fit_calibration`),
        ``W`` its weight bytes in units of :data:`WEIGHT_COLUMN_BYTES` (0 without
        ``weight_pricing``)."""
        frame = configs_frame([u.config for u in units])
        delta = self.reorder_delta_ms(frame, unit_inputs(units)) + self.memory_delta_ms(frame)
        latency = self.predict(frame) - self.call_overhead_ms_ + delta
        second = self._second_slope(frame)
        weights = weight_bytes(frame).sum() / WEIGHT_COLUMN_BYTES if self.weight_pricing else 0.0
        return [latency[~second].sum(), latency[second].sum(), len(frame), 1.0, weights]

    @property
    def calibration_loo_worst(self) -> float:
        """The largest absolute leave-one-out relative error of the calibration
        (``max |calibration_loo_|``; 0 when there is none)."""
        return float(np.max(np.abs(self.calibration_loo_), initial=0.0))

    def describe_calibration(self) -> str:
        """One line: what the whole-model totals are and, once calibrated, the weight
        streaming scale where one is priced (``memory_scale_``) and the calibration's
        leave-one-out error (``calibration_loo_``) as its median and worst absolute value."""
        self._check_fitted()
        n = self.calibration_models_
        if n is None:  # loaded from a file saved before the count was recorded
            return "calibrated (the file records no leave-one-out error)"
        if not n:
            return "UNCALIBRATED plain unit sum"
        line = f"calibrated on {n} measured model{'s' if n > 1 else ''}"
        if self.memory_priced_:
            line += f", weight streaming at {self.memory_scale_:.1f}x the probed rate"
        if self.weight_ms_per_byte_ > 0:
            per_mib = self.weight_ms_per_byte_ * 2**20 * 1e3
            line += f", weights {per_mib:.1f} µs per MiB more in a model than alone"
        loo = 100 * np.abs(self.calibration_loo_)
        if not len(loo):
            return f"{line} (too few for a leave-one-out error: {LOO_MIN_MODELS} or more)"
        return f"{line}; leave-one-out error median {np.median(loo):.1f}%, worst {loo.max():.1f}%"


def _solve_calibration(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``[a, a4, b, c, d]`` fitted to the rows ``A = [S_other, S_second, n_units, 1, W]`` of
    measured totals ``y`` (:meth:`LatencyPredictor.fit_calibration`); ``a4 = a`` when one
    slope is fitted; ``d = 0`` unless ``W`` varies and the models outnumber the
    coefficients, ``d`` included, by two or more."""
    share = A[:, 1] / np.maximum(A[:, 0] + A[:, 1], 1e-12)
    varies = (A[:, 1] > 0).all() or np.ptp(share) > 0.05  # the data can tell a4 from a
    two_slopes = len(y) >= 4 and (A[:, 0] > 0).all() and varies
    if not two_slopes:
        A = np.c_[A[:, 0] + A[:, 1], np.zeros(len(A)), A[:, 2:]]
    columns = [0, 1, 2, 3] if two_slopes else [0, 2, 3]
    if np.ptp(A[:, 2]) == 0:  # same unit count (pruned variants): n_units ~ intercept
        columns.remove(2)
    if len(y) < 3:
        columns = [0]
    if A.shape[1] > 4 and np.ptp(A[:, 4]) > 0 and len(y) >= len(columns) + 3:
        columns.append(4)
    from scipy.optimize import lsq_linear

    lower = {0: 0.0, 1: 0.0, 2: 0.0, 3: -0.5 * float(y.min()), 4: 0.0}
    bounds = ([lower[j] for j in columns], [np.inf] * len(columns))
    fit = lsq_linear(A[:, columns] / y[:, None], np.ones_like(y), bounds=bounds)
    coef = np.zeros(5)
    coef[columns] = fit.x
    if not two_slopes:
        coef[1] = coef[0]
    return coef


#: fewest measured models for a leave-one-out estimate of the calibration's error
LOO_MIN_MODELS = 4
#: the unit of the calibration's weight column (MiB), so its coefficient is of the order of
#: the slopes'
WEIGHT_COLUMN_BYTES = 2.0**20

#: the scales of the probed weight streaming cost a ``memory_pricing="fit"`` calibration
#: chooses from (0: unpriced; 1: the probed rate)
MEMORY_SCALES = np.round(np.arange(0.0, 2.05, 0.1), 2)


def _relative_residual(A: np.ndarray, y: np.ndarray) -> float:
    """``Σ_i (total_i / y_i − 1)²`` of the calibration fitted to rows ``A``."""
    return float(np.sum((A @ _solve_calibration(A, y) / y - 1) ** 2))


def _memory_scale(A0: np.ndarray, A1: np.ndarray, y: np.ndarray) -> float:
    """The scale ``k`` of :data:`MEMORY_SCALES` whose rows ``A0 + k·(A1 − A0)`` (calibration
    rows without and with the probed weight streaming) fit ``y`` with the smallest relative
    residuals; the smallest such ``k`` on ties."""
    residuals = [_relative_residual(A0 + k * (A1 - A0), y) for k in MEMORY_SCALES]
    return float(MEMORY_SCALES[int(np.argmin(np.round(residuals, 12)))])


def _leave_one_out_scaled(A0: np.ndarray, A1: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`_leave_one_out` of a ``memory_pricing="fit"`` calibration: each left-out
    model predicted with the scale (:func:`_memory_scale`) and coefficients chosen on the
    others. Shape ``(n_models,)``, empty below :data:`LOO_MIN_MODELS` models."""
    if len(y) < LOO_MIN_MODELS:
        return np.zeros(0)
    errors = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        k = _memory_scale(A0[keep], A1[keep], y[keep])
        A = A0 + k * (A1 - A0)
        errors[i] = float(A[i] @ _solve_calibration(A[keep], y[keep])) / y[i] - 1
    return errors


def _leave_one_out(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Relative error ``total_i / y_i − 1`` of each measured model predicted by the
    calibration fitted without it; shape ``(n_models,)``, empty below
    :data:`LOO_MIN_MODELS` models. An estimate of how far predictions of models that were
    not measured miss."""
    if len(y) < LOO_MIN_MODELS:
        return np.zeros(0)
    errors = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        errors[i] = float(A[i] @ _solve_calibration(A[keep], y[keep])) / y[i] - 1
    return errors
