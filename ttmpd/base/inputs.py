"""From ``uint8`` NHWC images to the tensor a base model eats — one place, used everywhere.

Training, evaluation and every later stage call :func:`to_model_input` with the
normalisation stored in the checkpoint, so a model never sees differently scaled inputs at
train and test time::

    x = (images / 255 - mean[c]) / std[c]        float32, NCHW
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._layout import with_layout
from ..data import to_float_nchw
from ..data.dataset import as_nhwc
from ..errors import InputError

Normalization = tuple[tuple[float, ...], tuple[float, ...]]


def channel_stats(images: np.ndarray, *, decimals: int = 4) -> Normalization:
    """Per-channel mean and std of ``uint8`` images in [0, 1] units, rounded to ``decimals``.

    This is the normalisation :func:`~ttmpd.base.train_base` stores: computed once on the
    training split (MNIST source: mean 0.1307, std 0.3081).
    """
    nhwc = as_nhwc(images)
    if len(nhwc) == 0:
        raise InputError("cannot compute channel statistics of an empty image batch")
    x = nhwc.reshape(-1, nhwc.shape[-1]).astype(np.float64) / 255.0
    mean = tuple(round(float(v), decimals) for v in x.mean(axis=0))
    std = tuple(max(round(float(v), decimals), 10.0**-decimals) for v in x.std(axis=0))
    return mean, std


def to_model_input(
    images: np.ndarray, normalization: Normalization | Sequence[Sequence[float]] | None
) -> torch.Tensor:
    """``uint8`` images ``(N, H, W[, C])`` -> normalised ``float32`` tensor ``(N, C, H, W)``
    with plain NCHW strides.

    Args:
        images: ``uint8`` in 0..255 (the :mod:`ttmpd.data` convention).
        normalization: ``(mean, std)`` with one value per channel (or one for all), as
            stored in :attr:`ttmpd.models.Checkpoint.normalization`; ``None`` keeps [0, 1].
    """
    # exact NCHW strides: grey images permuted from NHWC keep strides PyTorch reads as
    # channels_last, which would run (and train) every conv in channels_last
    x = with_layout(torch.from_numpy(to_float_nchw(images)), channels_last=False)
    if normalization is None:
        return x
    mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in normalization)
    channels = x.shape[1]
    if mean.ndim != 1 or mean.shape != std.shape or len(mean) not in (1, channels):
        raise InputError(
            f"normalization has {len(mean)} mean(s) and {len(std)} std(s) for {channels}-channel "
            "images; give one mean/std per channel (or one for all)"
        )
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def input_channels(model: nn.Module) -> int | None:
    """``in_channels`` of the model's first convolution (None if it has none)."""
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return int(module.in_channels)
    return None


def check_input_channels(model: nn.Module, images: np.ndarray, *, what: str = "the data") -> None:
    """Raise :class:`~ttmpd.errors.InputError` if the model's first conv cannot take ``images``."""
    expected = input_channels(model)
    channels = as_nhwc(images).shape[-1]
    if expected is not None and expected != channels:
        raise InputError(
            f"the model expects {expected}-channel images but {what} has {channels} "
            f"channel(s); evaluate it on data like its training data (or train a base model "
            f"with in_channels={channels})"
        )
