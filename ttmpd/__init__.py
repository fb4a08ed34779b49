"""ttmpd: hardware-aware latency modeling for test-time model pruning and distillation.

Stages (imports flow in this direction only)::

    profiler -> lut -> pruning        distill (stands alone)

Nothing happens at import time: subpackages import their heavy dependencies lazily.
"""

from ._version import __version__ as __version__
from .errors import TtmpdError as TtmpdError

__all__ = ["TtmpdError", "__version__"]
