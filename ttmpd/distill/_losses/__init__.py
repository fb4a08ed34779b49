"""The distillation loss catalogue: one registry, one signature, weighted combinations.

Importing this package registers every loss in :data:`LOSSES` (class definitions only;
nothing is computed). ``logits``: ce, kd, dkd; ``hints``: fitnet, at, ab, vid, ft, fsp;
``relations``: sp, rkd, pkt, cc, nst; ``contrastive``: crd.
"""

from . import contrastive as _contrastive  # noqa: F401  (registers crd)
from . import hints as _hints  # noqa: F401  (registers fitnet, at, ab, vid, ft, fsp)
from . import logits as _logits  # noqa: F401  (registers ce, kd, dkd)
from . import relations as _relations  # noqa: F401  (registers sp, rkd, pkt, cc, nst)
from ._base import LOSSES as LOSSES
from ._base import CombinedLoss as CombinedLoss
from ._base import DistillLoss as DistillLoss
from ._base import LossContext as LossContext
from ._base import LossTerm as LossTerm
from ._base import list_losses as list_losses
from ._base import parse_loss_spec as parse_loss_spec
from ._base import spec_needs_features as spec_needs_features
from .hints import attention_map as attention_map
from .logits import kd_loss as kd_loss

__all__ = [
    "LOSSES",
    "CombinedLoss",
    "DistillLoss",
    "LossContext",
    "LossTerm",
    "attention_map",
    "kd_loss",
    "list_losses",
    "parse_loss_spec",
    "spec_needs_features",
]
