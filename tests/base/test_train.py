from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import ttmpd.base.train as train_module
from ttmpd.base import TrainConfig, TrainingInterrupted, evaluate, train_base
from ttmpd.errors import InputError, TtmpdError
from ttmpd.models import load_checkpoint


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_is_deterministic_for_a_seed(tiny, trained, source, test_data):
    again = train_base(tiny, source, test=test_data)
    assert _same_weights(trained.model, again.model)
    assert trained.epoch_losses == again.epoch_losses
    other = train_base(dataclasses.replace(tiny, seed=1), source)
    assert not _same_weights(trained.model, other.model)


def test_training_leaves_global_state_alone(tiny, source):
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_base(dataclasses.replace(tiny, threads=threads + 1), source.subset(slice(0, 64)))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_training_records_its_run(trained):
    assert trained.input_shape == (1, 16, 16) and trained.num_classes == 4
    assert len(trained.epoch_losses) == 1 and np.isfinite(trained.epoch_losses[0])
    assert trained.samples_per_s > 0 and not trained.model.training


def test_training_learns(tiny, source, test_data):
    """Five epochs on 4 learnable classes (chance 25%): a training loop that does not
    step, steps the wrong way or shuffles labels stays near chance. Not three: after 12
    steps BatchNorm's running statistics (momentum 0.1) hold only 1 − 0.9¹² ≈ 72% of the
    data's, and whether eval mode then reads the test set right depended on the training
    layout's rounding (channels_last read 0.72 on seed 0, NCHW 1.0)."""
    result = train_base(dataclasses.replace(tiny, epochs=5), source, test=test_data)
    losses = result.epoch_losses
    assert losses[-1] < 0.5 * losses[0]
    assert result.clean_accuracy >= 0.8


def test_adamw_learns_and_is_not_sgd(tiny, source, test_data):
    """AdamW at its usual lr learns the 4 classes; an option that still ran SGD would give
    the SGD weights of the same seed (or not learn at lr 3e-3)."""
    config = dataclasses.replace(tiny, epochs=3, optimizer="adamw", lr=3e-3, weight_decay=0.05)
    result = train_base(config, source, test=test_data)
    assert result.clean_accuracy >= 0.8
    assert result.metadata()["train_config"]["optimizer"] == "adamw"
    sgd_same_lr = train_base(dataclasses.replace(config, optimizer="sgd", epochs=1), source)
    adamw_one_epoch = train_base(dataclasses.replace(config, epochs=1), source)
    assert not _same_weights(adamw_one_epoch.model, sgd_same_lr.model)


def test_adamw_decay_is_decoupled(tiny, source, monkeypatch):
    """The optimizer train_base builds is torch's AdamW with the config's lr and decay."""
    built = []
    real = torch.optim.AdamW

    def spy(*args, **kwargs):
        built.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    config = dataclasses.replace(tiny, optimizer="adamw", lr=2e-3, weight_decay=0.05)
    train_base(config, source.subset(slice(0, 64)))
    assert built == [{"lr": 2e-3, "betas": (0.9, 0.999), "weight_decay": 0.05}]


def test_checkpoint_round_trips(trained, checkpoint_path, test_data):
    ckpt = load_checkpoint(checkpoint_path)
    assert ckpt.arch == "resnet20"
    assert ckpt.arch_kwargs == {"in_channels": 1, "num_classes": 4}
    assert ckpt.input_shape == (1, 16, 16) and ckpt.num_classes == 4
    assert ckpt.normalization == trained.normalization
    meta = ckpt.metadata
    assert meta["dataset"] == "synthetic" and meta["epochs"] == 1 and meta["seed"] == 0
    assert meta["clean_test_accuracy"] == trained.clean_accuracy
    assert meta["train_time_s"] >= 0 and meta["ttmpd_version"]
    assert _same_weights(ckpt.model, trained.model)
    accuracy = evaluate(ckpt.model, test_data.images, test_data.labels, ckpt.normalization)
    assert accuracy == trained.clean_accuracy


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"model": "resnet99"}, "unknown model .*file.py:factory"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"momentum": 1.5}, "momentum"),
        ({"max_shift_px": -1}, "max_shift_px"),
        ({"seed": -3}, "seed"),
        ({"optimizer": "adam"}, "unknown optimizer 'adam'; choose one of: sgd, adamw"),
    ],
)
def test_bad_config_is_rejected(change, words):
    with pytest.raises(InputError, match=words):
        TrainConfig(**change)


def test_bad_datasets_are_rejected(tiny, source):
    with pytest.raises(InputError, match="unknown dataset"):
        train_base(tiny, "cifar100")
    with pytest.raises(InputError, match="no labels"):
        train_base(tiny, source.without_labels())


def test_interrupt_raises_exit_130_and_writes_nothing(tiny, source, monkeypatch, tmp_path):
    calls = []

    def interrupted(images, max_px, rng):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return images

    monkeypatch.setattr(train_module, "random_shift", interrupted)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 1") as info:
        train_base(tiny, source)
    assert isinstance(info.value, TtmpdError) and info.value.exit_code == 130


FACTORY = """
from torch import nn


def make(classes=4):
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, classes))  # 16 x 16 inputs: where the square is


def make_wrong():
    return make(classes=7)
"""


def test_your_own_factory_model_trains_and_saves_as_a_module(tiny, source, test_data, tmp_path):
    (tmp_path / "mine.py").write_text(FACTORY)
    config = dataclasses.replace(tiny, model=f"{tmp_path / 'mine.py'}:make", epochs=3)
    result = train_base(config, source, test=test_data)
    first = result.model[0].weight.detach().clone()
    assert result.clean_accuracy > 0.5  # 4 classes: chance is 0.25
    path = result.save(tmp_path / "mine.pt")
    ckpt = load_checkpoint(path)
    assert ckpt.arch is None and ckpt.num_classes == 4 and ckpt.input_shape == (1, 16, 16)
    assert torch.equal(ckpt.model[0].weight, first)


def test_a_factory_model_with_other_classes_is_refused(tiny, source, tmp_path):
    (tmp_path / "mine.py").write_text(FACTORY)
    config = dataclasses.replace(tiny, model=f"{tmp_path / 'mine.py'}:make_wrong")
    with pytest.raises(InputError, match=r"outputs shape \(2, 7\); the data has 4 classes"):
        train_base(config, source)
