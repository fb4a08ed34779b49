"""The test-time scenario: embedded data, corruptions (covariate shift), loaders, streams.

Conventions: images are ``uint8`` NHWC ``(N, H, W, C)``, C in {1, 3}; labels are ``int64``
``(N,)`` and optional (test-time data is unlabeled; labels are for evaluation only). Use
:meth:`ImageDataset.to_float_nchw` to get ``float32`` NCHW in [0, 1] for a model.

Nothing is read at import time; scikit-learn and matplotlib are imported only when used.
"""

from .corruptions import Corruption as Corruption
from .corruptions import corrupt as corrupt
from .corruptions import get_corruption as get_corruption
from .corruptions import list_corruptions as list_corruptions
from .dataset import DataFileError as DataFileError
from .dataset import ImageDataset as ImageDataset
from .dataset import to_float_nchw as to_float_nchw
from .embedded import load_digits as load_digits
from .embedded import load_mnist as load_mnist
from .loaders import load_cifar10c as load_cifar10c
from .loaders import load_image_folder as load_image_folder
from .loaders import load_npz as load_npz
from .loaders import load_path as load_path
from .loaders import load_stream as load_stream
from .preview import save_preview as save_preview
from .stream import StreamInfo as StreamInfo
from .stream import make_stream as make_stream

__all__ = [
    "Corruption",
    "DataFileError",
    "ImageDataset",
    "StreamInfo",
    "corrupt",
    "get_corruption",
    "list_corruptions",
    "load_cifar10c",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "load_npz",
    "load_path",
    "load_stream",
    "make_stream",
    "save_preview",
    "to_float_nchw",
]
