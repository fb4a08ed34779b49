"""Embedded MNIST and scikit-learn digits: splits, conventions, checksum."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ttmpd.data import DataFileError, load_digits, load_mnist
from ttmpd.data.embedded import MNIST_SHA256, mnist_path, sha256_file, stratified_split
from ttmpd.errors import InputError


def test_embedded_file_matches_published_sha256() -> None:
    assert sha256_file(mnist_path()) == MNIST_SHA256


def test_mnist_splits_have_documented_sizes_and_conventions() -> None:
    source, test, everything = load_mnist("source"), load_mnist("test"), load_mnist("all")
    assert (len(source), len(test), len(everything)) == (6000, 4000, 10000)
    for ds in (source, test):
        assert ds.images.shape[1:] == (28, 28, 1)
        assert ds.images.dtype == np.uint8
        assert ds.labels is not None and ds.labels.dtype == np.int64
        assert set(np.unique(ds.labels)) == set(range(10))
    np.testing.assert_array_equal(everything.images[:6000], source.images)
    np.testing.assert_array_equal(everything.images[6000:], test.images)


def test_mnist_split_is_stratified_disjoint_and_fixed() -> None:
    source, test = load_mnist("source"), load_mnist("test")
    src_counts = np.bincount(source.labels, minlength=10)
    test_counts = np.bincount(test.labels, minlength=10)
    np.testing.assert_allclose(src_counts / (src_counts + test_counts), 0.6, atol=0.002)
    src_keys = {img.tobytes() for img in source.images}
    overlap = sum(img.tobytes() in src_keys for img in test.images)
    assert overlap <= 5  # MNIST has a few exact duplicate digits, not shared indices
    np.testing.assert_array_equal(load_mnist("test").images, test.images)
    assert len(np.unique(test.labels[:20])) > 3  # classes interleaved, not in blocks


def test_stratified_split_indices_partition_the_set() -> None:
    labels = np.repeat(np.arange(3), [10, 20, 31])
    source, test = stratified_split(labels, 30, seed=1)
    assert len(source) == 30 and len(test) == 31
    assert sorted(np.concatenate([source, test]).tolist()) == list(range(61))
    with pytest.raises(InputError, match=r"n_source=61 must be in 1\.\.60"):
        stratified_split(labels, 61, seed=1)


def test_float_nchw_view_for_models() -> None:
    x = load_mnist("test").subset(slice(0, 4)).to_float_nchw()
    assert x.shape == (4, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() == 1.0


def test_damaged_mnist_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "mnist10k.npz"
    shutil.copy(mnist_path(), copy)
    assert len(load_mnist("test", path=copy)) == 4000
    data = bytearray(copy.read_bytes())
    data[1000] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match=r"mnist10k.npz is damaged \(sha256 .*reinstall"):
        load_mnist(path=copy)
    with pytest.raises(DataFileError, match="is missing; reinstall ttmpd"):
        load_mnist(path=tmp_path / "nope.npz")


def test_bad_split_name() -> None:
    with pytest.raises(InputError, match="unknown split 'train'; choose one of: source, test"):
        load_mnist("train")  # type: ignore[arg-type]


def test_digits_are_8x8_uint8_with_the_same_kind_of_split() -> None:
    source, test = load_digits("source"), load_digits("test")
    assert (len(source), len(test)) == (1078, 719)
    assert source.images.shape[1:] == (8, 8, 1) and source.images.dtype == np.uint8
    assert source.images.max() == 255 and source.images.min() == 0
    assert test.name == "digits/test"
