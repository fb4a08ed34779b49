"""The teacher cache: one teacher pass per sample, memmap round trip and reuse, selection
strategies, augmented views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ttmpd.distill import CacheConfig, DistillConfig, SelectionConfig, TeacherCache, distill
from ttmpd.distill import entropy as entropy_of
from ttmpd.errors import InputError


class IdTeacher(nn.Module):
    """Logits computed from the sample id: class ``label_of(id)``, confidence by id parity."""

    def __init__(self, label_of, confident_of=lambda ids: torch.ones_like(ids, dtype=torch.bool)):
        super().__init__()
        self.label_of, self.confident_of = label_of, confident_of
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        raw = (x[:, 0, 0, :2] * 255).round().long()
        ids = raw[:, 0] + 256 * raw[:, 1]
        logits = torch.zeros(len(x), 4)
        logits[torch.arange(len(x)), self.label_of(ids)] = 1.0
        scale = torch.where(self.confident_of(ids), 20.0, 0.1)
        return logits * scale[:, None] + self.dummy


def test_teacher_runs_once_per_sample_and_never_during_training(
    make_net, counting, images, to_model_input
):
    teacher = counting(make_net())
    cache = TeacherCache.build(
        teacher,
        images,
        to_model_input,
        layers=["model.layer1", "model.layer2"],
        selection=SelectionConfig("random", size=40, seed=3),
        config=CacheConfig(batch_size=16),
    )
    assert sorted(teacher.seen) == sorted(cache.indices.tolist())  # each chosen sample once
    assert cache.teacher_forwards == 40 == cache.num_samples
    assert cache.arrays["feature0"].shape == (1, 40, 8, 12, 12)
    seen = len(teacher.seen)
    student = make_net((4, 8), seed=2)
    config = DistillConfig(
        loss="kd,at",
        feature_layers=("layer1", "layer2"),
        teacher_layers=("model.layer1", "model.layer2"),
        epochs=3,
        batch_size=16,
        progress=False,
    )
    result = distill(teacher, student, cache, to_model_input, config)
    assert len(teacher.seen) == seen + 2  # only the one-off shape probe of 2 samples
    assert result.summary["teacher_forwards_saved"] == 3 * 40 - 40
    assert list(result.history["teacher_forwards"]) == [40, 40, 40]


def test_cached_targets_equal_a_fresh_teacher_pass(make_net, images, to_model_input):
    teacher = make_net()
    cache = TeacherCache.build(
        teacher,
        images,
        to_model_input,
        layers=["layer2"],
        selection=SelectionConfig(size=20),
        config=CacheConfig(batch_size=7),
    )
    ids = np.arange(20)
    batch, feats = cache.batch(ids, np.zeros(20, dtype=np.int64))
    with torch.no_grad():
        expected = teacher(to_model_input(images[cache.indices]))
    assert np.array_equal(batch, images[cache.indices])
    assert torch.allclose(feats.logits, expected, atol=1e-5)
    assert torch.equal(feats.index, torch.arange(20))


def test_memmap_round_trip_and_reuse(make_net, counting, images, to_model_input, tmp_path):
    teacher = counting(make_net())
    kwargs = dict(layers=["model.layer1"], selection=SelectionConfig(size=24))
    first = TeacherCache.build(
        teacher, images, to_model_input, config=CacheConfig(directory=str(tmp_path)), **kwargs
    )
    assert isinstance(first.arrays["logits"].base, np.memmap) or isinstance(
        first.arrays["logits"], np.memmap
    )
    assert (tmp_path / "meta.json").is_file() and (tmp_path / "feature0.npy").is_file()
    calls = len(teacher.seen)
    again = TeacherCache.build(
        teacher, images, to_model_input, config=CacheConfig(directory=str(tmp_path)), **kwargs
    )
    assert len(teacher.seen) == calls and again.teacher_forwards == 0
    for name in first.arrays:
        assert np.array_equal(np.asarray(first.arrays[name]), np.asarray(again.arrays[name]))
    in_memory = TeacherCache.build(teacher, images, to_model_input, **kwargs)
    assert np.allclose(in_memory.arrays["feature0"], again.arrays["feature0"], atol=1e-6)
    other = TeacherCache.build(  # another seed: stale, rebuilt
        teacher,
        images,
        to_model_input,
        config=CacheConfig(directory=str(tmp_path)),
        layers=["model.layer1"],
        selection=SelectionConfig(size=24, seed=9),
    )
    assert other.teacher_forwards == 24


def test_balanced_selection_gives_equal_counts_per_pseudo_label(
    counting, to_model_input, make_stream
):
    images = make_stream(400)
    # 70% of the stream is class 0
    teacher = counting(IdTeacher(lambda ids: torch.where(ids % 10 < 7, 0, ids % 3 + 1)))
    cache = TeacherCache.build(
        teacher,
        images,
        to_model_input,
        selection=SelectionConfig("balanced", size=40),
        config=CacheConfig(batch_size=32),
    )
    labels = cache.arrays["logits"][0].argmax(1)
    assert np.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
    assert len(set(teacher.seen)) == len(teacher.seen)  # no sample twice
    assert cache.teacher_forwards == len(teacher.seen) < 400  # stopped once full


def test_reliable_selection_filters_by_entropy(counting, to_model_input, make_stream):
    images = make_stream(200)
    teacher = counting(IdTeacher(lambda ids: ids % 4, lambda ids: ids % 2 == 0))
    cache = TeacherCache.build(
        teacher,
        images,
        to_model_input,
        selection=SelectionConfig("reliable", size=30, entropy_fraction=0.4),
    )
    assert cache.num_samples == 30
    assert all(i % 2 == 0 for i in cache.indices)
    ent = entropy_of(torch.from_numpy(np.asarray(cache.arrays["logits"][0])))
    assert float(ent.max()) < 0.4 * math.log(4)
    with pytest.raises(InputError, match="accepted no samples"):
        TeacherCache.build(
            IdTeacher(lambda ids: ids % 4, lambda ids: ids < 0),
            images,
            to_model_input,
            selection=SelectionConfig("reliable", size=10),
        )


def test_augmented_views_carry_their_own_teacher_outputs(make_net, images, to_model_input):
    teacher = make_net()
    cache = TeacherCache.build(
        teacher,
        images,
        to_model_input,
        layers=["layer1"],
        selection=SelectionConfig(size=10),
        config=CacheConfig(views=3, shift_px=2),
    )
    assert cache.views == 3 and cache.teacher_forwards == 30
    assert not np.array_equal(cache.images[1], cache.images[0])
    with torch.no_grad():
        expected = teacher(to_model_input(np.asarray(cache.images[2])))
    assert torch.allclose(torch.from_numpy(cache.arrays["logits"][2]), expected, atol=1e-5)
    assert cache.saved_forwards(epochs=10) == 10 * 10 - 30


def test_online_random_selection_needs_no_teacher(counting, make_net, images, to_model_input):
    teacher = counting(make_net())
    cache = TeacherCache.build(
        teacher,
        images,
        to_model_input,
        selection=SelectionConfig(size=16),
        config=CacheConfig(outputs=False),
    )
    assert teacher.seen == [] and not cache.has_outputs and cache.num_samples == 16


def test_bad_feature_layer_is_named(make_net, images, to_model_input):
    with pytest.raises(InputError, match=r"'layer9' not found.*layer1"):
        TeacherCache.build(make_net(), images, to_model_input, layers=["layer9"])
