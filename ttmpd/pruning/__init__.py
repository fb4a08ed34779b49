"""Structured channel pruning: channel groups, prune plans, importance, random variants.

``channel_groups`` finds the channels that must be pruned together (torch-pruning's
dependency graph, ids are root module paths; attention heads and grouped-conv offsets as
units); a ``PrunePlan`` says which channels of which
groups to keep and is stored as JSON; ``apply_plan`` validates and applies it;
``importance(name)`` scores channels; ``random_plan`` draws random pruned variants.
"""

from .._renamed import renamed_attributes
from ._apply import apply_plan as apply_plan
from ._apply import plan_from_removed as plan_from_removed
from ._bn import adapt_bn as adapt_bn
from ._calibrate import MAX_LOO as MAX_LOO
from ._calibrate import MODEL_TIMING as MODEL_TIMING
from ._calibrate import calibrate_predictor as calibrate_predictor
from ._calibrate import calibration_round_to as calibration_round_to
from ._calibrate import calibration_variants as calibration_variants
from ._calibrate import measure_models as measure_models
from ._checked import BUDGET_OVER as BUDGET_OVER
from ._checked import MEASURE_ROUNDS as MEASURE_ROUNDS
from ._checked import CheckedPrune as CheckedPrune
from ._checked import budget_band as budget_band
from ._checked import checked_prune as checked_prune
from ._checked import measure_beside as measure_beside
from ._fresh import FreshMeasurer as FreshMeasurer
from ._groups import ChannelGroup as ChannelGroup
from ._groups import GroupOptions as GroupOptions
from ._groups import MemberSlice as MemberSlice
from ._groups import channel_groups as channel_groups
from ._importance import IMPORTANCES as IMPORTANCES
from ._importance import importance as importance
from ._importance import parameter_grads as parameter_grads
from ._interop import LatencyAwareImportance as LatencyAwareImportance
from ._interop import latency_costs as latency_costs
from ._mask import ChannelMasker as ChannelMasker
from ._outputs import save_prune_result as save_prune_result
from ._pareto import pareto_front as pareto_front
from ._pareto import pareto_sweep as pareto_sweep
from ._pareto import plot_pareto as plot_pareto
from ._plan import PLAN_FORMAT as PLAN_FORMAT
from ._plan import SCHEMA_VERSION as SCHEMA_VERSION
from ._plan import PrunePlan as PrunePlan
from ._plan import model_fingerprint as model_fingerprint
from ._problem import METHODS as METHODS
from ._problem import PruneResult as PruneResult
from ._problem import SearchConfig as SearchConfig
from ._proxies import PROXIES as PROXIES
from ._proxies import AccuracyModel as AccuracyModel
from ._proxies import agreement_proxies as agreement_proxies
from ._random import random_plan as random_plan
from ._search import BudgetSearch as BudgetSearch
from ._search import prune as prune

__all__ = [
    "BUDGET_OVER",
    "IMPORTANCES",
    "MAX_LOO",
    "MEASURE_ROUNDS",
    "METHODS",
    "MODEL_TIMING",
    "PLAN_FORMAT",
    "PROXIES",
    "SCHEMA_VERSION",
    "AccuracyModel",
    "BudgetSearch",
    "ChannelGroup",
    "ChannelMasker",
    "CheckedPrune",
    "FreshMeasurer",
    "GroupOptions",
    "LatencyAwareImportance",
    "MemberSlice",
    "PrunePlan",
    "PruneResult",
    "SearchConfig",
    "adapt_bn",
    "agreement_proxies",
    "apply_plan",
    "budget_band",
    "calibrate_predictor",
    "calibration_round_to",
    "calibration_variants",
    "channel_groups",
    "checked_prune",
    "importance",
    "latency_costs",
    "measure_beside",
    "measure_models",
    "model_fingerprint",
    "parameter_grads",
    "pareto_front",
    "pareto_sweep",
    "plan_from_removed",
    "plot_pareto",
    "prune",
    "random_plan",
    "save_prune_result",
]


# its name before 2026-12-01, kept one release
__getattr__ = renamed_attributes(__name__, globals(), {"recalibrate_bn": "adapt_bn"})
