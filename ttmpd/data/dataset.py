"""The image dataset record shared by the loaders, the corruptions and the stream writer.

Data convention (the same everywhere in :mod:`ttmpd.data`):

- ``images``: ``uint8`` array of shape ``(N, H, W, C)`` (NHWC), ``C`` is 1 (grayscale) or 3
  (RGB), 0 = black / background, 255 = white / full ink.
- ``labels``: ``int64`` array of shape ``(N,)`` or ``None``. Test-time data is unlabeled by
  default; labels, when present, are for evaluation only.

Models want ``float32`` NCHW in [0, 1]: use :meth:`ImageDataset.to_float_nchw` (or
:func:`to_float_nchw` for a bare array).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError


class DataFileError(InputError):
    """A data file is missing, unreadable, damaged, or has the wrong shape or dtype."""


def as_nhwc(images: np.ndarray, *, what: str = "images") -> np.ndarray:
    """Return ``images`` as a 4-D ``uint8`` NHWC view, accepting ``(N, H, W)`` grayscale.

    Raises :class:`~ttmpd.errors.InputError` for other ranks, dtypes or channel counts.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise InputError(
            f"{what} have dtype {images.dtype}, expected uint8 in 0..255; "
            "convert with (x * 255).round().clip(0, 255).astype(np.uint8)"
        )
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise InputError(
            f"{what} have shape {images.shape}, expected (N, H, W) or (N, H, W, C) with C in "
            "{1, 3}; transpose NCHW arrays with x.transpose(0, 2, 3, 1)"
        )
    return images


def to_float_nchw(images: np.ndarray) -> np.ndarray:
    """Convert ``uint8`` images ``(N, H, W[, C])`` to ``float32`` ``(N, C, H, W)`` in [0, 1]."""
    nhwc = as_nhwc(images)
    return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A batch of images with optional labels.

    Attributes:
        images: ``uint8`` ``(N, H, W, C)``, C in {1, 3}; ``(N, H, W)`` is accepted and
            expanded to ``C = 1``.
        labels: ``int64`` ``(N,)`` or ``None`` (unlabeled test-time data).
        name: a short description, e.g. ``"mnist/test"`` or ``"fog@3 of mnist/test"``.
        classes: optional class names, index ``i`` naming label ``i``.
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    name: str = "images"
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        images = as_nhwc(self.images, what=f"{self.name} images")
        object.__setattr__(self, "images", images)
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
                raise InputError(
                    f"{self.name} labels have shape {labels.shape} and dtype {labels.dtype}; "
                    "expected a 1-D integer array"
                )
            if len(labels) != len(images):
                raise InputError(
                    f"{self.name} has {len(images)} images but {len(labels)} labels; "
                    "give one label per image"
                )
            object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_hw(self) -> tuple[int, int]:
        """Image height and width in pixels."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def channels(self) -> int:
        """Number of channels: 1 (grayscale) or 3 (RGB)."""
        return int(self.images.shape[3])

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def to_float_nchw(self) -> np.ndarray:
        """Images as ``float32`` ``(N, C, H, W)`` in [0, 1], ready for a model."""
        return to_float_nchw(self.images)

    def subset(self, index: np.ndarray | slice) -> ImageDataset:
        """The images (and labels) selected by ``index``."""
        labels = None if self.labels is None else self.labels[index]
        return replace(self, images=self.images[index], labels=labels)

    def without_labels(self) -> ImageDataset:
        """The same images with the labels dropped (what a test-time method may see)."""
        return replace(self, labels=None)
