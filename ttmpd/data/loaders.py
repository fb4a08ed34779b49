"""Loaders for users' own test-time data: CIFAR-10-C folders, ``.npz`` files, image folders.

Every loader returns an :class:`~ttmpd.data.dataset.ImageDataset` (``uint8`` NHWC images).
Test-time data is unlabeled by default: pass ``labels=True`` to also load the labels, which
are meant for evaluation only. Problems with a file raise
:class:`~ttmpd.data.dataset.DataFileError` with a one-line message naming the file and fix.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from .dataset import DataFileError, ImageDataset, as_nhwc

CIFAR_C_SEVERITIES = 5
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
STREAM_SCHEMA_VERSION = 1
"""Version of the ``.npz`` test-stream layout written by :func:`ttmpd.data.make_stream`."""


def _load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise DataFileError(f"{path} does not exist; check the path")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFileError(
            f"cannot read {path} as a .npy array ({exc}); re-create the file"
        ) from None


def _check_images(array: np.ndarray, path: Path) -> np.ndarray:
    try:
        return as_nhwc(array, what=f"images in {path}")
    except InputError as exc:
        raise DataFileError(str(exc)) from None


def _check_labels(labels: np.ndarray, n: int, path: Path) -> np.ndarray:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataFileError(
            f"labels in {path} have shape {labels.shape} and dtype {labels.dtype}; "
            "expected a 1-D integer array"
        )
    if len(labels) != n:
        raise DataFileError(
            f"{path} has {len(labels)} labels for {n} images; give one label per image"
        )
    return labels.astype(np.int64)


def load_cifar10c(
    folder: str | Path, corruption: str, severity: int, *, labels: bool = False
) -> ImageDataset:
    """One corruption and severity of a CIFAR-10-C-style folder.

    Layout: ``<folder>/<corruption>.npy`` is ``uint8`` ``(5 * N, H, W, C)``, the five
    severities stacked in order; ``<folder>/labels.npy`` holds ``(5 * N,)`` or ``(N,)``
    integer labels (only read when ``labels=True``).

    Args:
        folder: the dataset folder, e.g. ``CIFAR-10-C/``.
        corruption: file stem, e.g. ``"fog"``.
        severity: 1..5; selects rows ``(severity - 1) * N`` to ``severity * N``.
        labels: also load the labels (for evaluation).

    Returns:
        ``N`` images ``(N, H, W, C)`` ``uint8``, labels ``int64`` ``(N,)`` or ``None``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(f"{folder} is not a directory; give the CIFAR-10-C folder")
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise InputError(f"severity {severity!r} must be an integer in 1..5")
    if not 1 <= severity <= CIFAR_C_SEVERITIES:
        raise InputError(f"severity {severity} is out of range; CIFAR-10-C has severities 1..5")
    path = folder / f"{corruption}.npy"
    if not path.is_file():
        found = sorted(p.stem for p in folder.glob("*.npy") if p.stem != "labels")
        raise DataFileError(
            f"{path} does not exist; choose one of: {', '.join(found) or '(no .npy files)'}"
        )
    stacked = _load_npy(path, mmap=True)
    if stacked.ndim != 4 or stacked.shape[-1] not in (1, 3):
        raise DataFileError(
            f"{path} has shape {stacked.shape}; expected (5 * N, H, W, C) with C in {{1, 3}}"
        )
    if stacked.dtype != np.uint8:
        raise DataFileError(f"{path} has dtype {stacked.dtype}; expected uint8 in 0..255")
    if len(stacked) == 0 or len(stacked) % CIFAR_C_SEVERITIES:
        raise DataFileError(
            f"{path} has {len(stacked)} images, not a positive multiple of 5; "
            "stack the 5 severities along the first axis"
        )
    n = len(stacked) // CIFAR_C_SEVERITIES
    rows = slice((severity - 1) * n, severity * n)
    images = np.array(stacked[rows])
    label_array = None
    if labels:
        label_path = folder / "labels.npy"
        if not label_path.is_file():
            raise DataFileError(f"{label_path} does not exist; add it or load without labels")
        raw = _load_npy(label_path)
        if raw.ndim == 1 and len(raw) == len(stacked):
            raw = raw[rows]
        label_array = _check_labels(raw, n, label_path)
    return ImageDataset(images, label_array, name=f"{corruption}@{severity} of {folder.name}")


def load_npz(path: str | Path, *, labels: bool = False) -> ImageDataset:
    """Images from an ``.npz``: key ``images`` (``uint8`` ``(N, H, W[, C])``), optional
    ``labels`` (``(N,)`` integers, read only when ``labels=True``).

    Test streams written by :func:`ttmpd.data.make_stream` carry a ``schema_version`` that
    is checked; other files need only the keys above.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path} does not exist; check the path")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if "schema_version" in keys:
                version = int(npz["schema_version"])
                if version != STREAM_SCHEMA_VERSION:
                    raise DataFileError(
                        f"{path} has stream schema version {version}, this ttmpd reads "
                        f"{STREAM_SCHEMA_VERSION}; re-create it with `ttmpd data make-stream`"
                    )
            if "images" not in keys:
                raise DataFileError(
                    f"{path} has no 'images' array (keys: {', '.join(sorted(keys)) or 'none'}); "
                    "save it with np.savez(path, images=...)"
                )
            images = _check_images(npz["images"], path)
            label_array = None
            if labels:
                if "labels" not in keys:
                    raise DataFileError(
                        f"{path} has no 'labels' array; add one or load without labels"
                    )
                label_array = _check_labels(npz["labels"], len(images), path)
            name = str(npz["name"]) if "name" in keys else path.stem
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataFileError(f"cannot read {path} as .npz ({exc}); re-create the file") from None
    return ImageDataset(images, label_array, name=name)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = "L" if image.mode in ("1", "L", "I;16", "I", "F", "LA") else "RGB"
            return np.asarray(image.convert(mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFileError(f"cannot read image {path} ({exc}); remove or replace it") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image_folder(folder: str | Path, *, labels: bool = False) -> ImageDataset:
    """PNG/JPEG files of one size from ``folder``, or from its class subfolders.

    Files directly in ``folder`` and in its subfolders are all read (sorted by path). With
    ``labels=True`` the images must sit in class subfolders; sorted subfolder names give
    labels 0, 1, ... (``classes`` on the result). If any image is in colour, all are
    converted to RGB (C = 3), otherwise C = 1.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(f"{folder} is not a directory; give a folder of PNG/JPEG images")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and _image_files(p))
    loose = _image_files(folder)
    if labels and (loose or not subdirs):
        raise DataFileError(
            f"{folder} needs one subfolder of images per class to give labels; "
            "move the images into class folders or load without labels"
        )
    files = [(path, -1) for path in loose]
    for index, sub in enumerate(subdirs):
        files += [(path, index) for path in _image_files(sub)]
    if not files:
        raise DataFileError(f"{folder} holds no .png/.jpg/.jpeg images; check the folder")
    arrays = [_read_image(path) for path, _ in files]
    first_hw = arrays[0].shape[:2]
    for (path, _), array in zip(files, arrays, strict=True):
        if array.shape[:2] != first_hw:
            raise DataFileError(
                f"{path} is {array.shape[1]}x{array.shape[0]} but {files[0][0]} is "
                f"{first_hw[1]}x{first_hw[0]}; resize all images to one size"
            )
    if any(a.ndim == 3 for a in arrays):
        arrays = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    images = np.stack(arrays)
    label_array = np.array([lab for _, lab in files], dtype=np.int64) if labels else None
    classes = tuple(sub.name for sub in subdirs) if labels else ()
    return ImageDataset(images, label_array, name=folder.name, classes=classes)


#: Names ``--data`` takes for the embedded test splits (a path is anything else).
EMBEDDED_STREAMS = ("mnist", "digits")


def labels_available(path: str | Path) -> bool:
    """Whether ``path`` carries labels: an ``.npz`` with a ``labels`` array, or a folder
    whose images all sit in class subfolders."""
    path = Path(path)
    if path.is_dir():
        subdirs = [p for p in path.iterdir() if p.is_dir() and _image_files(p)]
        return bool(subdirs) and not _image_files(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as npz:
            return "labels" in npz.files
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return False  # load_npz reports the unreadable file


def load_stream(source: str | Path, *, labels: bool | None = None) -> ImageDataset:
    """A test stream: ``mnist``/``digits`` (the embedded test split, with labels) or a path
    (``.npz`` or image folder, see :func:`load_path`). ``labels``: True requires them,
    False skips them, None (default) reads them when the stream has them; the method needs
    none, they only measure accuracy."""
    from .embedded import load_digits, load_mnist

    if str(source) == "mnist":
        return load_mnist("test")
    if str(source) == "digits":
        return load_digits("test")
    if labels is None:
        labels = labels_available(source)
    return load_path(source, labels=labels)


def load_path(path: str | Path, *, labels: bool = False) -> ImageDataset:
    """Load ``path``: an ``.npz`` file (e.g. a test stream) or a folder of images."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path, labels=labels)
    if path.suffix.lower() == ".npz" or not path.exists():
        return load_npz(path, labels=labels)
    raise DataFileError(
        f"{path} is neither an .npz file nor a folder of images; convert it to .npz"
    )
