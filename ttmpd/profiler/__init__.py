"""Measurement: latency units of a model, backends that time them, the timing loop.

Typical use::

    from ttmpd.profiler import extract_units, get_backend, BackendConfig
    backend = get_backend("onnxruntime", BackendConfig(threads=1))
    units = extract_units(model, torch.randn(1, 3, 224, 224), fusion=backend.fusion).units
    timing = backend.measure(units[0].config)      # Timing(median_ms=..., p10_ms=..., ...)

Latency tables built from these measurements live in :mod:`ttmpd.lut`.
"""

from ._extract import ATTENTION_PARTS as ATTENTION_PARTS
from ._extract import FUSIONS as FUSIONS
from ._extract import INPUT as INPUT
from ._extract import Extraction as Extraction
from ._extract import LayerUnit as LayerUnit
from ._extract import UncoveredOp as UncoveredOp
from ._extract import extract_units as extract_units
from ._extract import split_fusion as split_fusion
from ._fingerprint import DeviceFingerprint as DeviceFingerprint
from ._fingerprint import cpu_info as cpu_info
from ._grid import GridConfig as GridConfig
from ._grid import grid_configs as grid_configs
from ._grid import unit_variants as unit_variants
from ._modules import build_unit as build_unit
from ._rules import BlockedLayoutRule as BlockedLayoutRule
from ._rules import ConvLayout as ConvLayout
from ._rules import DeviceRules as DeviceRules
from ._rules import IsolationCost as IsolationCost
from ._rules import NativeConvRule as NativeConvRule
from ._rules import infer_blocked_rule as infer_blocked_rule
from ._rules import infer_native_rule as infer_native_rule
from ._timing import PairedTiming as PairedTiming
from ._timing import Timing as Timing
from ._timing import TimingConfig as TimingConfig
from ._timing import measure as measure
from ._timing import rounds_decided as rounds_decided
from ._timing import rounds_settled as rounds_settled
from ._units import CHANNEL_PRESERVING as CHANNEL_PRESERVING
from ._units import LAYOUTS as LAYOUTS
from ._units import OP_KINDS as OP_KINDS
from ._units import UnitConfig as UnitConfig
from ._units import with_channels as with_channels
from .backends import BACKENDS as BACKENDS
from .backends import Backend as Backend
from .backends import BackendBase as BackendBase
from .backends import BackendConfig as BackendConfig
from .backends import get_backend as get_backend

__all__ = [
    "ATTENTION_PARTS",
    "BACKENDS",
    "CHANNEL_PRESERVING",
    "FUSIONS",
    "INPUT",
    "LAYOUTS",
    "OP_KINDS",
    "Backend",
    "BackendBase",
    "BackendConfig",
    "BlockedLayoutRule",
    "ConvLayout",
    "DeviceFingerprint",
    "DeviceRules",
    "Extraction",
    "GridConfig",
    "IsolationCost",
    "LayerUnit",
    "NativeConvRule",
    "PairedTiming",
    "Timing",
    "TimingConfig",
    "UncoveredOp",
    "UnitConfig",
    "build_unit",
    "cpu_info",
    "extract_units",
    "get_backend",
    "grid_configs",
    "infer_blocked_rule",
    "infer_native_rule",
    "measure",
    "rounds_decided",
    "rounds_settled",
    "split_fusion",
    "unit_variants",
    "with_channels",
]
