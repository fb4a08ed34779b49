from __future__ import annotations

from ttmpd.base import evaluate, reference_checkpoint_path
from ttmpd.data import load_mnist
from ttmpd.models import load_checkpoint


def test_shipped_checkpoint_loads_and_is_accurate():
    path = reference_checkpoint_path()
    assert path.is_file() and path.stat().st_size < 2_000_000
    ckpt = load_checkpoint(path)
    assert ckpt.arch == "resnet20" and ckpt.input_shape == (1, 28, 28) and ckpt.num_classes == 10
    assert ckpt.normalization is not None
    meta = ckpt.metadata
    assert meta["dataset"] == "mnist/source" and meta["clean_test_accuracy"] >= 0.985
    test = load_mnist("test").subset(slice(0, 500))
    accuracy = evaluate(ckpt.model, test.images, test.labels, ckpt.normalization)
    assert accuracy >= 0.95
