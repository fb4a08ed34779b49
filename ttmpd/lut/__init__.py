"""Latency lookup tables: storage, validation, merging, profiling, and the latency predictor."""

from .._renamed import renamed_attributes
from ._build import ProfileInterrupted as ProfileInterrupted
from ._build import ProfileResult as ProfileResult
from ._build import Shard as Shard
from ._build import journal_path as journal_path
from ._build import profile_model as profile_model
from ._device import backend_for_table as backend_for_table
from ._device import recheck_table as recheck_table
from ._drift import TableCheck as TableCheck
from ._drift import check_table as check_table
from ._features import FEATURE_NAMES as FEATURE_NAMES
from ._features import configs_frame as configs_frame
from ._features import unit_features as unit_features
from ._features import unit_work as unit_work
from ._fleet import FleetRequest as FleetRequest
from ._fleet import FleetResult as FleetResult
from ._fleet import fleet_outputs as fleet_outputs
from ._fleet import merge_shards as merge_shards
from ._fleet import profile_fleet as profile_fleet
from ._persist import load_predictor as load_predictor
from ._persist import save_predictor as save_predictor
from ._persist import table_digest as table_digest
from ._plots import plot_layer_latency as plot_layer_latency
from ._plots import plot_predicted_vs_measured as plot_predicted_vs_measured
from ._predictor import REGRESSORS as REGRESSORS
from ._predictor import LatencyPredictor as LatencyPredictor
from ._predictor import ModelPrediction as ModelPrediction
from ._predictor import unit_inputs as unit_inputs
from ._predictor import work_offset as work_offset
from ._savings import CoupledChannels as CoupledChannels
from ._savings import PruneSavings as PruneSavings
from ._savings import coupled_channels as coupled_channels
from ._schema import COLUMNS as COLUMNS
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._schema import LutMeta as LutMeta
from ._schema import config_from_row as config_from_row
from ._schema import make_row as make_row
from ._selection import cross_validate_regressors as cross_validate_regressors
from ._table import LatencyTable as LatencyTable

__all__ = [
    "COLUMNS",
    "FEATURE_NAMES",
    "REGRESSORS",
    "SCHEMA_VERSION",
    "CoupledChannels",
    "FleetRequest",
    "FleetResult",
    "LatencyPredictor",
    "LatencyTable",
    "LutMeta",
    "ModelPrediction",
    "ProfileInterrupted",
    "ProfileResult",
    "PruneSavings",
    "Shard",
    "TableCheck",
    "backend_for_table",
    "check_table",
    "config_from_row",
    "configs_frame",
    "coupled_channels",
    "cross_validate_regressors",
    "fleet_outputs",
    "journal_path",
    "load_predictor",
    "make_row",
    "merge_shards",
    "plot_layer_latency",
    "plot_predicted_vs_measured",
    "profile_fleet",
    "profile_model",
    "recheck_table",
    "save_predictor",
    "table_digest",
    "unit_features",
    "unit_inputs",
    "unit_work",
    "work_offset",
]

# names before 2026-12-01, kept one release: they clashed with ttmpd.pruning's channel groups
__getattr__ = renamed_attributes(
    __name__, globals(), {"ChannelGroup": "CoupledChannels", "channel_groups": "coupled_channels"}
)
