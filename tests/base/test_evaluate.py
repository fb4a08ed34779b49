from __future__ import annotations

import numpy as np
import pytest
import torch

from ttmpd.base import (
    COLUMNS,
    accuracy_grid,
    evaluate,
    predict,
    resolve_severities,
    robustness_table,
    save_heatmap,
    summarize,
)
from ttmpd.data import ImageDataset, corrupt, list_corruptions
from ttmpd.errors import InputError
from ttmpd.models import create_model, load_checkpoint


def test_evaluate_matches_an_independent_computation():
    torch.manual_seed(0)
    model = create_model("resnet20", in_channels=1, num_classes=4).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(70, 12, 12, 1), dtype=np.uint8)
    labels = rng.integers(0, 4, size=70)
    mean, std = 0.2, 0.3
    # Independent: numpy normalisation, one forward pass, no batching.
    x = (images.astype(np.float32) / 255 - mean) / std
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    expected = float((logits.argmax(1).numpy() == labels).mean())
    got = evaluate(model, images, labels, ((mean,), (std,)), batch_size=16)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 1  # a random model: some right, some wrong
    model.train()
    predict(model, images[:4], None)
    assert model.training  # mode restored


def test_evaluate_needs_matching_labels():
    model = create_model("resnet20", in_channels=1)
    images = np.zeros((4, 8, 8, 1), dtype=np.uint8)
    with pytest.raises(InputError, match="one label per image"):
        evaluate(model, images, np.zeros(3, dtype=np.int64), None)
    with pytest.raises(InputError, match="batch_size"):
        evaluate(model, images, np.zeros(4, dtype=np.int64), None, batch_size=0)


def test_robustness_table_layout(checkpoint_path, test_data):
    table = robustness_table(checkpoint_path, test_data, "fog,contrast", [5, 1], seed=0)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 1 + 2 * 2
    assert table.iloc[0][["corruption", "severity"]].tolist() == ["clean", 0]
    assert table["corruption"].tolist()[1:] == ["fog", "fog", "contrast", "contrast"]
    assert table["severity"].tolist()[1:] == [1, 5, 1, 5]
    assert table["accuracy"].between(0, 1).all() and (table["n"] == len(test_data)).all()
    ckpt = load_checkpoint(checkpoint_path)
    fog5 = corrupt(test_data.images, "fog", 5, 0)
    direct = evaluate(ckpt.model, fog5, test_data.labels, ckpt.normalization)
    assert table.iloc[2]["accuracy"] == direct


def test_robustness_table_limit_and_summary(checkpoint_path, test_data):
    table = robustness_table(checkpoint_path, test_data, None, [3], seed=0, limit=32)
    assert len(table) == 1 + len(list_corruptions()) and (table["n"] == 32).all()
    summary = summarize(table)
    assert summary["clean"] == table.iloc[0]["accuracy"]
    assert summary["n_corruptions"] == len(list_corruptions())
    assert summary["mean_by_severity"][3] == pytest.approx(table["accuracy"][1:].mean())


def test_heatmap_is_written(checkpoint_path, test_data, tmp_path):
    table = robustness_table(checkpoint_path, test_data, "fog,pixelate", [1, 3], limit=32)
    grid = accuracy_grid(table)
    assert list(grid.index) == ["fog", "pixelate", "mean"] and list(grid.columns) == [1, 3]
    path = save_heatmap(table, tmp_path / "h.png", title="tiny")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="no corrupted rows"):
        save_heatmap(table.iloc[:1], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"dataset": "cifar100"}, "unknown dataset"),
        ({"corruptions": "fog,snowstorm"}, "unknown corruption 'snowstorm'"),
        ({"corruptions": ""}, "no corruptions"),
        ({"severities": [0]}, "severity 0 is out of range"),
        ({"severities": "6"}, "severity 6 is out of range"),
        ({"severities": "3,x"}, "cannot parse severities"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_arguments_are_rejected(checkpoint_path, test_data, kwargs, words):
    kwargs = {"dataset": test_data, "corruptions": "fog", "severities": [1], **kwargs}
    with pytest.raises(InputError, match=words):
        robustness_table(checkpoint_path, **kwargs)


def test_channel_mismatch_and_unlabeled_data_are_rejected(checkpoint_path, test_data):
    rgb = ImageDataset(np.repeat(test_data.images, 3, axis=3), test_data.labels, name="rgb")
    with pytest.raises(InputError, match=r"expects 1-channel images.*rgb has 3"):
        robustness_table(checkpoint_path, rgb, "fog", [1])
    with pytest.raises(InputError, match="no labels"):
        robustness_table(checkpoint_path, test_data.without_labels(), "fog", [1])


def test_resolve_severities_sorts_and_dedups():
    assert resolve_severities("5,3,5") == [3, 5]
    assert resolve_severities(None) == [1, 2, 3, 4, 5]
