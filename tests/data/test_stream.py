"""make_stream: an atomic .npz test stream that load_npz reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ttmpd.data import ImageDataset, corrupt, load_mnist, load_npz, make_stream
from ttmpd.errors import InputError


def test_stream_round_trip_with_labels_and_metadata(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "stream.npz"
    info = make_stream("mnist", "fog", 3, 7, out, limit=50)
    assert info.n_images == 50 and info.image_shape == (28, 28, 1) and info.has_labels
    assert info.name == "fog@3 of mnist/test"
    test = load_mnist("test").subset(slice(0, 50))
    stream = load_npz(out, labels=True)
    np.testing.assert_array_equal(stream.images, corrupt(test.images, "fog", 3, seed=7))
    np.testing.assert_array_equal(stream.labels, test.labels)
    assert load_npz(out).labels is None  # unlabeled unless asked
    with np.load(out) as npz:
        assert int(npz["severity"]) == 3 and int(npz["seed"]) == 7
        assert str(npz["corruption"]) == "fog"
    assert [p.name for p in out.parent.iterdir()] == ["stream.npz"]  # no temp file left


def test_stream_from_an_unlabeled_rgb_dataset(tmp_path: Path, rgb32: np.ndarray) -> None:
    info = make_stream(
        ImageDataset(rgb32, name="rgb"), "jpeg_compression", 2, 0, tmp_path / "s.npz"
    )
    assert not info.has_labels
    assert load_npz(info.path).images.shape == (32, 32, 32, 3)


def test_same_arguments_give_identical_files_content(tmp_path: Path) -> None:
    a = make_stream("digits", "gaussian_noise", 5, 1, tmp_path / "a.npz")
    b = make_stream("digits", "gaussian_noise", 5, 1, tmp_path / "b.npz")
    np.testing.assert_array_equal(load_npz(a.path).images, load_npz(b.path).images)


def test_failed_stream_leaves_existing_file_untouched(tmp_path: Path) -> None:
    out = tmp_path / "s.npz"
    out.write_bytes(b"old")
    with pytest.raises(InputError, match="unknown corruption 'nope'"):
        make_stream("mnist", "nope", 1, 0, out, limit=5)
    with pytest.raises(InputError, match="unknown dataset 'cifar'; choose one of: mnist"):
        make_stream("cifar", "fog", 1, 0, out)
    assert out.read_bytes() == b"old"
