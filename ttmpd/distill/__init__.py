"""Distillation after pruning: pseudo labels generated once, a loss catalogue, a trainer.

``_selection`` (which unlabeled test samples to fine-tune on) -> ``_cache`` (teacher run
once on them: logits and hooked features, in memory or numpy memmaps) -> ``_losses`` (one
registry, one ``forward(student: Features, teacher: Features)`` signature) and
``_schemes`` (standard, self-distillation, mutual learning, adversarial) -> ``_trainer``
(epochs/steps, resumable) -> ``_pipeline`` (checkpoint files in, student checkpoint out).
This package stands alone: it imports nothing from the profiler, the LUT or pruning.
"""

from ._cache import CacheConfig as CacheConfig
from ._cache import TeacherCache as TeacherCache
from ._config import DistillConfig as DistillConfig
from ._connectors import Connector as Connector
from ._features import FeatureHooks as FeatureHooks
from ._features import Features as Features
from ._features import default_feature_layers as default_feature_layers
from ._losses import LOSSES as LOSSES
from ._losses import CombinedLoss as CombinedLoss
from ._losses import DistillLoss as DistillLoss
from ._losses import LossContext as LossContext
from ._losses import LossTerm as LossTerm
from ._losses import list_losses as list_losses
from ._losses import parse_loss_spec as parse_loss_spec
from ._pipeline import distill_files as distill_files
from ._pipeline import held_out as held_out
from ._schemes import SCHEMES as SCHEMES
from ._schemes import Scheme as Scheme
from ._schemes import list_schemes as list_schemes
from ._selection import STRATEGIES as STRATEGIES
from ._selection import SelectionConfig as SelectionConfig
from ._selection import entropy as entropy
from ._state import DistillInterrupted as DistillInterrupted
from ._trainer import DistillResult as DistillResult
from ._trainer import accuracy as accuracy
from ._trainer import distill as distill

__all__ = [
    "LOSSES",
    "SCHEMES",
    "STRATEGIES",
    "CacheConfig",
    "CombinedLoss",
    "Connector",
    "DistillConfig",
    "DistillInterrupted",
    "DistillLoss",
    "DistillResult",
    "FeatureHooks",
    "Features",
    "LossContext",
    "LossTerm",
    "Scheme",
    "SelectionConfig",
    "TeacherCache",
    "accuracy",
    "default_feature_layers",
    "distill",
    "distill_files",
    "entropy",
    "held_out",
    "list_losses",
    "list_schemes",
    "parse_loss_spec",
]
