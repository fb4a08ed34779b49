"""Datasets that need no download: the embedded MNIST subset and scikit-learn's digits.

Both come with a fixed, stratified source/test split (seed written below), in a fixed
shuffled order so that classes are interleaved when a test stream is read in order:

==========  ========  ==========  ===========  =======================================
dataset     size      ``source``  ``test``     origin
==========  ========  ==========  ===========  =======================================
``mnist``   28x28x1   6,000       4,000        ``ttmpd/data/mnist10k.npz`` (see DATA.md)
``digits``  8x8x1     1,078       719          ``sklearn.datasets.load_digits`` (0..16)
==========  ========  ==========  ===========  =======================================

Nothing is read at import time; the MNIST file's SHA-256 is checked on every load.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError
from .dataset import DataFileError, ImageDataset

Split = Literal["source", "test", "all"]

SPLIT_SEED = 20240517
"""Seed of the fixed source/test split. Changing it changes every published number."""

MNIST_FILE = "mnist10k.npz"
MNIST_SHA256 = "0217e13bd0668deb198aa7d305edbf0331eb89f8a6e7dd226e03d1aa3a9bd4ef"
MNIST_N_SOURCE = 6000
DIGITS_SOURCE_FRACTION = 0.6
_SPLITS = ("source", "test", "all")
BUILTIN_DATASETS = ("mnist", "digits")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stratified_split(labels: np.ndarray, n_source: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(source, test)`` with class proportions kept.

    Each class contributes ``round(n_source * class_fraction)`` images to the source part
    (largest remainders fix the total to exactly ``n_source``). Both index arrays are
    returned in a seeded shuffled order.

    Args:
        labels: ``int`` ``(N,)`` class labels.
        n_source: number of source images, ``0 < n_source < N``.
        seed: split seed.

    Returns:
        Two ``int64`` index arrays of lengths ``n_source`` and ``N - n_source``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 < n_source < n:
        raise InputError(f"n_source={n_source} must be in 1..{n - 1}; pick a smaller split")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (n_source / n)
    take = np.floor(quota).astype(np.int64)
    remainder_order = np.argsort(-(quota - take), kind="stable")
    take[remainder_order[: n_source - int(take.sum())]] += 1
    source_parts, test_parts = [], []
    for cls, k in zip(classes, take, strict=True):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        source_parts.append(idx[:k])
        test_parts.append(idx[k:])
    source = rng.permutation(np.concatenate(source_parts)).astype(np.int64)
    test = rng.permutation(np.concatenate(test_parts)).astype(np.int64)
    return source, test


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of: {', '.join(_SPLITS)}")


def _select(
    images: np.ndarray, labels: np.ndarray, split: str, n_source: int, name: str
) -> ImageDataset:
    source, test = stratified_split(labels, n_source, SPLIT_SEED)
    if split == "all":
        index = np.concatenate([source, test])
    else:
        index = source if split == "source" else test
    classes = tuple(str(c) for c in range(10))
    return ImageDataset(images[index], labels[index], name=f"{name}/{split}", classes=classes)


def mnist_path() -> Path:
    """Path of the embedded ``mnist10k.npz`` inside the installed package."""
    return Path(str(resources.files(__package__).joinpath(MNIST_FILE)))


def read_mnist_file(
    path: str | Path, expected_sha256: str = MNIST_SHA256
) -> tuple[np.ndarray, np.ndarray]:
    """Read and verify an ``mnist10k.npz``: ``uint8`` images ``(10000, 28, 28)`` and labels.

    Raises :class:`DataFileError` if the file is missing or its SHA-256 differs.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"embedded MNIST file {path} is missing; reinstall ttmpd")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise DataFileError(
            f"{path} is damaged (sha256 {actual[:12]}... != {expected_sha256[:12]}...); "
            "reinstall ttmpd or copy a fresh mnist10k.npz"
        )
    with np.load(path) as npz:
        return npz["images"], npz["labels"].astype(np.int64)


def load_mnist(split: Split = "all", *, path: str | Path | None = None) -> ImageDataset:
    """The embedded 10,000-image MNIST subset, or its fixed ``source``/``test`` split.

    Args:
        split: ``"source"`` (6,000 images, to train base models), ``"test"`` (4,000 images,
            the test stream) or ``"all"`` (source followed by test).
        path: read this file instead of the embedded copy (its SHA-256 is still checked).

    Returns:
        An :class:`ImageDataset` with ``uint8`` images ``(N, 28, 28, 1)`` and ``int64``
        labels ``(N,)`` in 0..9.
    """
    _check_split(split)
    images, labels = read_mnist_file(mnist_path() if path is None else path)
    return _select(images, labels, split, MNIST_N_SOURCE, "mnist")


def load_digits(split: Split = "all") -> ImageDataset:
    """scikit-learn's bundled 1,797 8x8 digits, scaled from 0..16 to ``uint8`` 0..255.

    Args:
        split: ``"source"`` (60 %, 1,078 images), ``"test"`` (719) or ``"all"``.

    Returns:
        An :class:`ImageDataset` with ``uint8`` images ``(N, 8, 8, 1)`` and ``int64`` labels.
    """
    _check_split(split)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    n_source = round(len(labels) * DIGITS_SOURCE_FRACTION)
    return _select(images, labels, split, n_source, "digits")


def load_builtin(name: str, split: Split = "test") -> ImageDataset:
    """A built-in dataset by name: ``"mnist"`` or ``"digits"``."""
    if name not in BUILTIN_DATASETS:
        choices = ", ".join(BUILTIN_DATASETS)
        raise InputError(f"unknown dataset {name!r}; choose one of: {choices}")
    return load_mnist(split) if name == "mnist" else load_digits(split)
