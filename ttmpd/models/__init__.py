"""A weight-free model zoo, model loading by spec string, and ttmpd checkpoints.

Zoo models are written by hand (no torchvision, no downloads) and start from fresh weights
(Kaiming for the CNNs, truncated normal for the ViT): ``resnet18/34/50``, ``mobilenet_v2``,
``vgg11_bn`` (ImageNet layouts), ``resnet20/56`` (CIFAR layouts) and ``vit_mnist`` (a tiny
ViT for 28x28 digits). Importing this package registers them; nothing else runs.
"""

from . import cifar_resnet as _cifar_resnet  # noqa: F401  (registers resnet20/56)
from . import mobilenet as _mobilenet  # noqa: F401  (registers mobilenet_v2)
from . import resnet as _resnet  # noqa: F401  (registers resnet18/34/50)
from . import vgg as _vgg  # noqa: F401  (registers vgg11_bn)
from . import vit as _vit  # noqa: F401  (registers vit_mnist)
from ._zoo import MODELS as MODELS
from ._zoo import ModelInfo as ModelInfo
from ._zoo import create_model as create_model
from ._zoo import list_models as list_models
from ._zoo import model_info as model_info
from .checkpoint import CHECKPOINT_FORMAT as CHECKPOINT_FORMAT
from .checkpoint import SCHEMA_VERSION as SCHEMA_VERSION
from .checkpoint import Checkpoint as Checkpoint
from .checkpoint import load_checkpoint as load_checkpoint
from .checkpoint import save_checkpoint as save_checkpoint
from .loading import load_model as load_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODELS",
    "SCHEMA_VERSION",
    "Checkpoint",
    "ModelInfo",
    "create_model",
    "list_models",
    "load_checkpoint",
    "load_model",
    "model_info",
    "save_checkpoint",
]
