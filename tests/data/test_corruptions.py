"""Corruptions: registry, shapes, determinism, severity monotonicity, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ttmpd.data import corrupt, get_corruption, list_corruptions
from ttmpd.errors import InputError

REQUIRED = {
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur",
    "defocus_blur", "motion_blur", "zoom_blur", "contrast", "brightness", "fog", "pixelate",
    "jpeg_compression", "elastic_transform", "rotate", "shear", "scale", "translate",
}  # fmt: skip
ALL = list_corruptions()


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_registry_lists_every_required_corruption() -> None:
    assert set(ALL) >= REQUIRED
    assert sorted(ALL) == ALL


@pytest.mark.parametrize("name", ALL)
def test_table_has_five_rows_and_json_description(name: str) -> None:
    record = get_corruption(name)
    assert len(record.table) == 5
    assert all(len(row) == len(record.params) for row in record.table)
    described = json.loads(json.dumps(record.as_dict()))
    assert set(described["severities"]) == {"1", "2", "3", "4", "5"}


def test_spatial_parameters_scale_with_image_size() -> None:
    record = get_corruption("gaussian_blur")
    assert record.effective(5, (32, 32))["sigma"] == pytest.approx(1.0)
    assert record.effective(5, (28, 28))["sigma"] == pytest.approx(0.875)
    assert record.effective(5, (64, 128))["sigma"] == pytest.approx(2.0)
    assert get_corruption("contrast").effective(2, (28, 28)) == {"factor": 0.5}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "shape", [(5, 28, 28), (5, 28, 28, 1), (4, 32, 32, 3), (3, 20, 36, 3), (3, 8, 8, 1)]
)
def test_shape_and_dtype_preserved(name: str, shape: tuple[int, ...]) -> None:
    images = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    out = corrupt(images, name, 3, seed=0)
    assert out.shape == images.shape
    assert out.dtype == np.uint8
    assert not np.shares_memory(out, images)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_gives_identical_output(name: str, rgb32: np.ndarray) -> None:
    first = corrupt(rgb32[:8], name, 4, seed=123)
    second = corrupt(rgb32[:8], name, 4, seed=123)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", ALL)
def test_seed_matters_only_for_random_corruptions(name: str, mnist32: np.ndarray) -> None:
    a = corrupt(mnist32[:8], name, 4, seed=0)
    b = corrupt(mnist32[:8], name, 4, seed=1)
    if get_corruption(name).random:
        assert not np.array_equal(a, b)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("images_fixture", ["mnist32", "rgb32"])
def test_distance_to_clean_grows_with_severity(
    name: str, images_fixture: str, request: pytest.FixtureRequest
) -> None:
    clean = request.getfixturevalue(images_fixture)
    distances = [mad(corrupt(clean, name, s, seed=0), clean) for s in range(6)]
    assert distances[0] == 0.0
    assert all(np.diff(distances) > 0), f"{name}: {np.round(distances, 2)}"


def test_mnist_is_not_destroyed_at_severity_one(mnist32: np.ndarray) -> None:
    clean = mnist32.astype(np.float64)
    for name in ALL:
        noisy = corrupt(mnist32, name, 1, seed=0).astype(np.float64)
        distance = np.abs(noisy[:, None] - clean[None]).mean(axis=(2, 3, 4))
        nearest_is_self = distance.argmin(axis=1) == np.arange(len(clean))
        assert nearest_is_self.mean() >= 0.9, name


def test_severity_zero_is_a_copy(mnist32: np.ndarray) -> None:
    out = corrupt(mnist32, "fog", 0, seed=3)
    np.testing.assert_array_equal(out, mnist32)
    assert not np.shares_memory(out, mnist32)


def test_batches_larger_than_one_chunk_match_small_batches(mnist32: np.ndarray) -> None:
    images = np.tile(mnist32[:2], (1100, 1, 1, 1))  # 2,200 images: two chunks of 2,048
    out = corrupt(images, "zoom_blur", 2)
    np.testing.assert_array_equal(out[-2:], corrupt(mnist32[:2], "zoom_blur", 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "fogg"}, "unknown corruption 'fogg'; choose one of: brightness"),
        ({"severity": 6}, "severity 6 is out of range; use 0..5"),
        ({"severity": -1}, "severity -1 is out of range"),
        ({"severity": 2.5}, "must be an integer"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs: dict, message: str, mnist32) -> None:
    args = {"name": "fog", "severity": 2} | kwargs
    with pytest.raises(InputError, match=message) as info:
        corrupt(mnist32, args["name"], args["severity"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 28, 28), np.float32), "dtype float32, expected uint8"),
        (np.zeros((2, 3, 28, 28), np.uint8), r"shape \(2, 3, 28, 28\).*transpose"),
        (np.zeros((28, 28), np.uint8), "expected"),
        (np.zeros((2, 3, 3), np.uint8), "too small"),
    ],
)
def test_bad_images_give_clear_errors(images: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        corrupt(images, "contrast", 1)
