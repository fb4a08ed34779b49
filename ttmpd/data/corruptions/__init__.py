"""Covariate-shift corruptions (MNIST-C / CIFAR-10-C spirit) for uint8 images of any size.

Why our own implementation: the ``imagecorruptions`` package is unmaintained and its
parameters are tuned for ImageNet-scale (224x224) images, which wipes out a 28x28 digit even
at severity 1. Here every corruption is written with numpy, scipy.ndimage and Pillow, its
five severities are tabulated next to it (``noise.py``, ``blur.py``, ``photometric.py``,
``geometric.py``; CIFAR-10-C's values where they fit), and spatial parameters (unit
``px@32``) are scaled by ``min(H, W) / 32``. Random corruptions draw from
``numpy.random.default_rng(seed)``, so the same seed gives the same bytes.

Use :func:`corrupt` on a ``uint8`` batch ``(N, H, W)`` or ``(N, H, W, C)``, C in {1, 3};
:func:`list_corruptions` gives the names and :func:`get_corruption` the record with its table.
"""

from . import blur as blur
from . import geometric as geometric
from . import noise as noise
from . import photometric as photometric
from ._base import CORRUPTIONS as CORRUPTIONS
from ._base import REFERENCE_SIDE as REFERENCE_SIDE
from ._base import SEVERITIES as SEVERITIES
from ._base import Corruption as Corruption
from ._base import corrupt as corrupt
from ._base import get_corruption as get_corruption
from ._base import list_corruptions as list_corruptions

__all__ = [
    "CORRUPTIONS",
    "REFERENCE_SIDE",
    "SEVERITIES",
    "Corruption",
    "corrupt",
    "get_corruption",
    "list_corruptions",
]
