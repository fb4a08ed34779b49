"""Write a corrupted test stream to an ``.npz`` that every ttmpd command accepts as ``--data``.

Stream file layout (schema version :data:`~ttmpd.data.loaders.STREAM_SCHEMA_VERSION`):

==================  ==============  ==================================================
key                 dtype / shape   meaning
==================  ==============  ==================================================
``images``          uint8 NHWC      the corrupted images, in stream order
``labels``          int64 (N,)      ground truth, for evaluation only (if known)
``schema_version``  int64 ()        layout version, checked on load
``name``            str ()          e.g. ``"fog@3 of mnist/test"``
``corruption``      str ()          corruption name
``severity``        int64 ()        0..5 (0 = clean)
``seed``            int64 ()        seed of the corruption's random parts
==================  ==============  ==================================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..errors import InputError
from .corruptions import corrupt
from .dataset import ImageDataset
from .embedded import load_builtin
from .loaders import STREAM_SCHEMA_VERSION

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamInfo:
    """What :func:`make_stream` wrote.

    Attributes:
        path: the ``.npz`` written.
        name: stream description, e.g. ``"fog@3 of mnist/test"``.
        n_images: number of images.
        image_shape: ``(H, W, C)`` of one image.
        has_labels: whether ``labels`` were stored.
    """

    path: Path
    name: str
    n_images: int
    image_shape: tuple[int, int, int]
    has_labels: bool


def make_stream(
    dataset: str | ImageDataset,
    corruption: str,
    severity: int,
    seed: int,
    out_path: str | Path,
    *,
    limit: int | None = None,
) -> StreamInfo:
    """Corrupt a dataset and write it as a test stream ``.npz`` atomically.

    Args:
        dataset: ``"mnist"`` or ``"digits"`` (their fixed ``test`` split) or a dataset.
        corruption: a name from :func:`ttmpd.data.list_corruptions`.
        severity: 1..5, or 0 for the clean images.
        seed: seed of the corruption's random parts.
        out_path: the ``.npz`` to write (replaced atomically if it exists).
        limit: keep only the first ``limit`` images of the stream.

    Returns:
        A :class:`StreamInfo` describing the file.
    """
    source = load_builtin(dataset, "test") if isinstance(dataset, str) else dataset
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit={limit} must be at least 1; omit it to keep all images")
        source = source.subset(slice(0, int(limit)))
    images = corrupt(source.images, corruption, severity, seed)
    name = f"{corruption}@{severity} of {source.name}"
    arrays: dict[str, np.ndarray] = {
        "images": images,
        "schema_version": np.int64(STREAM_SCHEMA_VERSION),
        "name": np.str_(name),
        "corruption": np.str_(corruption),
        "severity": np.int64(severity),
        "seed": np.int64(seed),
    }
    if source.labels is not None:
        arrays["labels"] = source.labels
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    logger.info("wrote %d images of %s to %s", len(images), name, out_path)
    h, w, c = (int(v) for v in images.shape[1:])
    return StreamInfo(Path(out_path), name, len(images), (h, w, c), source.has_labels)
