"""``ttmpd train-base`` and ``ttmpd evaluate`` through ``ttmpd.cli.main`` (in-process)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import ttmpd.base.train as train_module
from ttmpd.cli import main
from ttmpd.data import load_mnist, make_stream
from ttmpd.data.embedded import load_builtin
from ttmpd.models import load_checkpoint


@pytest.fixture
def small_mnist(monkeypatch):
    """train-base reads the built-in data by name; keep only 128 images of it."""

    def small(name, split="test"):
        return load_builtin(name, split).subset(slice(0, 128))

    monkeypatch.setattr(train_module, "load_builtin", small)


def test_train_base_writes_a_checkpoint(small_mnist, tmp_path, capsys):
    out = tmp_path / "base.pt"
    argv = ["train-base", "--data", "mnist", "--epochs", "1", "--batch-size", "64"]
    code = main([*argv, "--threads", "1", "--out", str(out), "--json", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input_shape"] == [1, 28, 28] and 0 <= summary["clean_test_accuracy"] <= 1
    ckpt = load_checkpoint(out)
    assert ckpt.arch == "resnet20" and ckpt.metadata["dataset"] == "mnist/source"
    assert ckpt.metadata["clean_test_accuracy"] == summary["clean_test_accuracy"]
    norm = summary["normalization"]
    assert ckpt.normalization == (tuple(norm["mean"]), tuple(norm["std"]))


def test_train_base_adamw_reaches_the_recipe(small_mnist, tmp_path, capsys):
    out = tmp_path / "vit.pt"
    argv = ["train-base", "--model", "vit_mnist", "--optimizer", "adamw", "--lr", "1e-3"]
    argv += ["--weight-decay", "0.05", "--epochs", "1", "--threads", "1", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    ckpt = load_checkpoint(out)
    recipe = ckpt.metadata["train_config"]
    assert ckpt.arch == "vit_mnist" and ckpt.arch_kwargs == {"in_channels": 1, "num_classes": 10}
    assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"]) == ("adamw", 1e-3, 0.05)
    assert "clean test accuracy" in capsys.readouterr().out


def test_train_base_interrupted_exits_130_without_file(small_mnist, tmp_path, capsys, monkeypatch):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "random_shift", interrupt)
    out = tmp_path / "base.pt"
    code = main(["train-base", "--epochs", "1", "--out", str(out), "--no-progress"])
    assert code == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_base_unknown_model_is_one_line(tmp_path, capsys):
    code = main(["train-base", "--model", "resnet99", "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown model 'resnet99'" in err


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory):
    from ttmpd.base import TrainConfig, train_base

    source = load_mnist("source").subset(slice(0, 128))
    config = TrainConfig(epochs=1, batch_size=64, threads=1)
    result = train_base(config, source, test=load_mnist("test").subset(slice(0, 64)))
    return result.save(tmp_path_factory.mktemp("mnist") / "base.pt")


def test_evaluate_writes_table_and_heatmap(mnist_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(mnist_checkpoint), "--data", "mnist", "--limit", "64"]
    code = main([*argv, "--corruptions", "fog,contrast", "--severities", "1,5", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "clean accuracy" in text and "severity 5" in text
    table = pd.read_csv(out / "accuracy.csv")
    assert list(table.columns) == ["corruption", "severity", "accuracy", "n"] and len(table) == 5
    assert (out / "accuracy_heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_json(mnist_checkpoint, capsys):
    argv = ["evaluate", "--model", str(mnist_checkpoint), "--limit", "32", "--json"]
    assert main([*argv, "--corruptions", "pixelate", "--severities", "3", "--no-progress"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [r["corruption"] for r in payload["rows"]] == ["clean", "pixelate"]
    assert set(payload["summary"]["mean_by_severity"]) == {"3"}


def test_evaluate_on_a_labeled_stream(mnist_checkpoint, tmp_path, capsys):
    stream = tmp_path / "fog3.npz"
    make_stream("mnist", "fog", 3, 0, stream, limit=48)
    code = main(["evaluate", "--model", str(mnist_checkpoint), "--data", str(stream)])
    text = capsys.readouterr().out
    assert code == 0 and text.startswith("fog@3: accuracy") and "48 images" in text


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--corruptions", "fog,snowstorm"], "unknown corruption 'snowstorm'"),
        (["--severities", "0"], "severity 0 is out of range"),
        (["--data", "cifar100"], "neither a built-in dataset (mnist, digits)"),
        (["--model", "missing.pt"], "not found"),
    ],
)
def test_evaluate_bad_input_is_one_line(mnist_checkpoint, extra, words, capsys, tmp_path):
    argv = ["evaluate", "--model", str(mnist_checkpoint), "--limit", "8", *extra]
    code = main([*argv, "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err
    assert not (tmp_path / "eval").exists()


def test_evaluate_rejects_rgb_stream_for_grayscale_model(mnist_checkpoint, tmp_path, capsys):
    stream = tmp_path / "rgb.npz"
    images = np.zeros((4, 28, 28, 3), dtype=np.uint8)
    np.savez(stream, images=images, labels=np.zeros(4, dtype=np.int64))
    code = main(["evaluate", "--model", str(mnist_checkpoint), "--data", str(stream)])
    err = capsys.readouterr().err
    assert code == 2 and "expects 1-channel images" in err
