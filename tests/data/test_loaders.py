"""Loaders for user data: CIFAR-10-C folders, .npz files, image folders; bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ttmpd.data import (
    DataFileError,
    ImageDataset,
    load_cifar10c,
    load_image_folder,
    load_npz,
    load_path,
    load_stream,
)
from ttmpd.errors import InputError

N = 4


def _cifar_c(folder: Path, *, labels: int | None = 5 * N) -> np.ndarray:
    """A fake CIFAR-10-C folder: fog.npy with 5 severities of N 8x8 RGB images."""
    folder.mkdir(exist_ok=True)
    stacked = np.zeros((5 * N, 8, 8, 3), np.uint8)
    for s in range(5):
        stacked[s * N : (s + 1) * N] = 10 * (s + 1)  # severity s+1 -> value 10 (s+1)
    np.save(folder / "fog.npy", stacked)
    if labels is not None:
        np.save(folder / "labels.npy", np.arange(labels) % 10)
    return stacked


def test_cifar10c_picks_the_severity_slice(tmp_path: Path) -> None:
    _cifar_c(tmp_path)
    ds = load_cifar10c(tmp_path, "fog", 3)
    assert ds.images.shape == (N, 8, 8, 3) and ds.images.dtype == np.uint8
    assert np.all(ds.images == 30)
    assert ds.labels is None  # unlabeled by default
    labelled = load_cifar10c(tmp_path, "fog", 2, labels=True)
    np.testing.assert_array_equal(labelled.labels, (np.arange(N) + N) % 10)


def test_cifar10c_accepts_per_severity_labels(tmp_path: Path) -> None:
    _cifar_c(tmp_path, labels=N)
    assert load_cifar10c(tmp_path, "fog", 5, labels=True).labels.tolist() == [0, 1, 2, 3]


def test_cifar10c_errors(tmp_path: Path) -> None:
    _cifar_c(tmp_path, labels=None)
    with pytest.raises(DataFileError, match=r"labels.npy does not exist; add it or load without"):
        load_cifar10c(tmp_path, "fog", 1, labels=True)
    with pytest.raises(DataFileError, match=r"snow.npy does not exist; choose one of: fog"):
        load_cifar10c(tmp_path, "snow", 1)
    with pytest.raises(InputError, match="severity 6 is out of range"):
        load_cifar10c(tmp_path, "fog", 6)
    np.save(tmp_path / "labels.npy", np.arange(7))
    with pytest.raises(DataFileError, match="has 7 labels for 4 images"):
        load_cifar10c(tmp_path, "fog", 1, labels=True)
    np.save(tmp_path / "bad_dtype.npy", np.zeros((10, 8, 8, 3), np.float32))
    with pytest.raises(DataFileError, match="dtype float32; expected uint8"):
        load_cifar10c(tmp_path, "bad_dtype", 1)
    np.save(tmp_path / "bad_shape.npy", np.zeros((10, 3, 8, 8), np.uint8))
    with pytest.raises(DataFileError, match=r"shape \(10, 3, 8, 8\); expected \(5 \* N"):
        load_cifar10c(tmp_path, "bad_shape", 1)
    np.save(tmp_path / "bad_count.npy", np.zeros((12, 8, 8, 3), np.uint8))
    with pytest.raises(DataFileError, match="12 images, not a positive multiple of 5"):
        load_cifar10c(tmp_path, "bad_count", 1)
    (tmp_path / "garbage.npy").write_bytes(b"not numpy")
    with pytest.raises(DataFileError, match=r"cannot read .*garbage.npy as a .npy array"):
        load_cifar10c(tmp_path, "garbage", 1)
    with pytest.raises(DataFileError, match="is not a directory"):
        load_cifar10c(tmp_path / "nope", "fog", 1)


def test_npz_round_trip_with_optional_labels(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    images = np.arange(3 * 5 * 6, dtype=np.uint8).reshape(3, 5, 6)
    np.savez(path, images=images, labels=np.array([2, 0, 1], np.uint8))
    ds = load_npz(path)
    assert ds.images.shape == (3, 5, 6, 1) and ds.labels is None
    np.testing.assert_array_equal(ds.images[..., 0], images)
    labelled = load_path(path, labels=True)
    assert labelled.labels.dtype == np.int64 and labelled.labels.tolist() == [2, 0, 1]


@pytest.mark.parametrize(
    ("arrays", "labels", "message"),
    [
        ({"x": np.zeros((2, 4, 4), np.uint8)}, False, r"no 'images' array \(keys: x\)"),
        ({"images": np.zeros((2, 4, 4), np.uint8)}, True, "no 'labels' array; add one"),
        ({"images": np.zeros((2, 4, 4), np.float64)}, False, "dtype float64, expected uint8"),
        ({"images": np.zeros((2, 4, 4, 5), np.uint8)}, False, r"shape \(2, 4, 4, 5\)"),
        (
            {"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(3, np.int64)},
            True,
            "has 3 labels for 2 images",
        ),
        (
            {"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(2, np.float32)},
            True,
            "expected a 1-D integer array",
        ),
        (
            {"images": np.zeros((2, 4, 4), np.uint8), "schema_version": np.int64(99)},
            False,
            "stream schema version 99",
        ),
    ],
)
def test_bad_npz_files(tmp_path: Path, arrays: dict, labels: bool, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataFileError, match=message) as info:
        load_npz(path, labels=labels)
    assert "\n" not in str(info.value)


def test_unreadable_and_missing_npz(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataFileError, match=r"cannot read .*broken.npz as .npz"):
        load_npz(path)
    with pytest.raises(DataFileError, match=r"missing\.npz does not exist; check the path"):
        load_path(tmp_path / "missing.npz")


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_flat_image_folder_is_unlabeled_grayscale(tmp_path: Path) -> None:
    for i in range(3):
        _save(tmp_path / f"{i}.png", np.full((6, 7), 40 * i, np.uint8))
    ds = load_image_folder(tmp_path)
    assert ds.images.shape == (3, 6, 7, 1) and ds.labels is None
    assert ds.images[:, 0, 0, 0].tolist() == [0, 40, 80]
    with pytest.raises(DataFileError, match="needs one subfolder of images per class"):
        load_image_folder(tmp_path, labels=True)


def test_class_subfolders_give_labels_and_colour_wins(tmp_path: Path) -> None:
    _save(tmp_path / "cat" / "a.png", np.full((5, 5, 3), (255, 0, 0), np.uint8))
    _save(tmp_path / "cat" / "b.jpg", np.full((5, 5, 3), 128, np.uint8))
    _save(tmp_path / "dog" / "c.PNG", np.full((5, 5), 200, np.uint8))
    ds = load_path(tmp_path, labels=True)
    assert isinstance(ds, ImageDataset)
    assert ds.images.shape == (3, 5, 5, 3)
    assert ds.labels.tolist() == [0, 0, 1] and ds.classes == ("cat", "dog")
    assert ds.images[2, 0, 0].tolist() == [200, 200, 200]
    assert load_image_folder(tmp_path).labels is None


def test_bad_image_folders(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"holds no \.png/\.jpg/\.jpeg images"):
        load_image_folder(tmp_path)
    _save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _save(tmp_path / "b.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DataFileError, match=r"b.png is 4x5 but .*a.png is 4x4; resize"):
        load_image_folder(tmp_path)
    (tmp_path / "b.png").unlink()
    (tmp_path / "c.png").write_bytes(b"not a png")
    with pytest.raises(DataFileError, match=r"cannot read image .*c.png .*remove or replace"):
        load_image_folder(tmp_path)


def test_dataset_record_validates_lengths() -> None:
    with pytest.raises(InputError, match="has 2 images but 3 labels"):
        ImageDataset(np.zeros((2, 4, 4), np.uint8), np.zeros(3, np.int64))


def test_load_stream_reads_labels_only_when_the_stream_has_them(tmp_path: Path) -> None:
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4, 1)
    np.savez(tmp_path / "bare.npz", images=images)
    np.savez(tmp_path / "labelled.npz", images=images, labels=np.array([2, 0, 1]))
    assert load_stream(tmp_path / "bare.npz").labels is None  # unlabeled is the normal case
    assert load_stream(tmp_path / "labelled.npz").labels.tolist() == [2, 0, 1]
    assert load_stream(tmp_path / "labelled.npz", labels=False).labels is None
    with pytest.raises(DataFileError, match="no 'labels' array"):
        load_stream(tmp_path / "bare.npz", labels=True)
    flat, classes = tmp_path / "flat", tmp_path / "classes"
    for i in range(2):
        _save(flat / f"{i}.png", np.full((4, 4), i, np.uint8))
        _save(classes / f"c{i}" / "x.png", np.full((4, 4), i, np.uint8))
    assert load_stream(flat).labels is None
    assert load_stream(classes).labels.tolist() == [0, 1]
    assert len(load_stream("mnist").labels) == 4000  # the embedded test split
