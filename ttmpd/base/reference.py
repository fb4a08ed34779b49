"""The shipped reference base model: ResNet-20 trained on the MNIST source split.

How it was made (command, seed, accuracy) is in ``ttmpd/models/CHECKPOINTS.md``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import ModelLoadError

REFERENCE_CHECKPOINT = "resnet20_mnist.pt"


def reference_checkpoint_path() -> Path:
    """Path of the shipped ``resnet20_mnist.pt`` inside the installed ``ttmpd.models``.

    Load it with :func:`ttmpd.models.load_checkpoint`; on the command line pass the path
    (``python -c "import ttmpd.base as b; print(b.reference_checkpoint_path())"``).
    """
    path = Path(str(resources.files("ttmpd.models").joinpath(REFERENCE_CHECKPOINT)))
    if not path.is_file():
        raise ModelLoadError(f"the reference checkpoint {path} is missing; reinstall ttmpd")
    return path
