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


def test_shipped_vit_matches_its_record():
    """The ViT checkpoint of CHECKPOINTS.md: its recorded accuracy is what it scores (the
    first 1,000 test images, within sampling error of the 4,000-image figure)."""
    path = reference_checkpoint_path().with_name("vit_mnist.pt")
    assert path.is_file() and path.stat().st_size < 1_000_000
    ckpt = load_checkpoint(path)
    assert ckpt.arch == "vit_mnist" and ckpt.input_shape == (1, 28, 28)
    meta = ckpt.metadata
    assert meta["train_config"]["optimizer"] == "adamw" and meta["n_test"] == 4000
    assert meta["clean_test_accuracy"] == 0.9475
    test = load_mnist("test").subset(slice(0, 1000))
    accuracy = evaluate(ckpt.model, test.images, test.labels, ckpt.normalization)
    assert abs(accuracy - meta["clean_test_accuracy"]) < 0.03
