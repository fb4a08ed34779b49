"""The trainer: determinism, resume == uninterrupted, Ctrl-C, history, schemes, online."""

from __future__ import annotations

import copy
import os
import signal

import numpy as np
import pytest
import torch

from ttmpd.distill import (
    CacheConfig,
    DistillConfig,
    DistillInterrupted,
    SelectionConfig,
    TeacherCache,
    distill,
    list_schemes,
)
from ttmpd.errors import InputError

LAYERS = ("layer1", "layer2")


def _setup(make_net, images, to_model_input, layers=LAYERS, size=40, views=1):
    teacher = make_net((8, 16), seed=1)
    cache = TeacherCache.build(
        teacher,
        images,
        to_model_input,
        layers=layers,
        selection=SelectionConfig(size=size),
        config=CacheConfig(views=views),
    )
    return teacher, cache


def _run(make_net, teacher, cache, to_model_input, **kwargs):
    kwargs.setdefault("loss", "kd:0.9,at:100,ce:0.1")
    kwargs.setdefault("feature_layers", LAYERS)
    config = DistillConfig(epochs=kwargs.pop("epochs", 2), batch_size=16, progress=False, **kwargs)
    student = make_net((4, 8), seed=2)
    return distill(teacher, student, cache, to_model_input, config, **_run_options)


_run_options: dict = {}


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_result(make_net, images, to_model_input):
    teacher, cache = _setup(make_net, images, to_model_input, views=2)
    a = _run(make_net, teacher, cache, to_model_input, seed=5)
    b = _run(make_net, teacher, cache, to_model_input, seed=5)
    c = _run(make_net, teacher, cache, to_model_input, seed=6)
    sa, sb, sc = _state(a.student), _state(b.student), _state(c.student)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.history["loss"].tolist() == b.history["loss"].tolist()


def test_history_columns_and_eval(make_net, images, to_model_input, tmp_path):
    teacher, cache = _setup(make_net, images, to_model_input)
    labels = np.arange(len(images)) % 4
    config = DistillConfig(
        loss="kd,at", feature_layers=LAYERS, epochs=2, batch_size=16, progress=False
    )
    result = distill(
        teacher,
        make_net((4, 8), seed=2),
        cache,
        to_model_input,
        config,
        eval_data=(images[:30], labels[:30]),
        out_dir=tmp_path,
    )
    expected = {"epoch", "step", "lr", "loss", "samples", "seconds", "samples_per_s"}
    expected |= {"teacher_forwards", "accuracy", "loss_kd", "loss_at", "adapt_s"}
    assert set(result.history.columns) == expected
    assert result.history["epoch"].tolist() == [1, 2]
    assert result.history["step"].tolist() == [3, 6]
    assert result.summary["accuracy_before"] is not None
    assert (tmp_path / "history.csv").is_file() and (tmp_path / "train_state.pt").is_file()
    assert not result.student.training


def test_eval_epochs_evaluates_only_those_and_does_not_change_training(
    make_net, images, to_model_input
):
    teacher, cache = _setup(make_net, images, to_model_input)
    labels = np.arange(len(images)) % 4
    config = DistillConfig(loss="kd", epochs=3, batch_size=16, progress=False)
    runs = {}
    for key, epochs in (("every", None), ("some", {1, 3})):
        student = make_net((4, 8), seed=2)
        result = distill(teacher, student, cache, to_model_input, config,
                         eval_data=(images[:30], labels[:30]), eval_epochs=epochs)  # fmt: skip
        runs[key] = result.history
    every, some = runs["every"], runs["some"]
    assert some["accuracy"].isna().tolist() == [False, True, False]
    np.testing.assert_array_equal(some["accuracy"].iloc[[0, 2]], every["accuracy"].iloc[[0, 2]])
    assert some["loss"].tolist() == every["loss"].tolist()


def test_interrupt_then_resume_equals_uninterrupted(make_net, images, to_model_input, tmp_path):
    teacher, cache = _setup(make_net, images, to_model_input, views=2)
    kwargs = dict(loss="kd,crd", scheme="adversarial", optimizer="adam", lr=1e-3, epochs=3)
    full = _run(make_net, teacher, cache, to_model_input, **kwargs)

    config = DistillConfig(
        loss="kd,crd",
        feature_layers=LAYERS,
        scheme="adversarial",
        optimizer="adam",
        lr=1e-3,
        epochs=3,
        batch_size=16,
        progress=False,
    )
    student = make_net((4, 8), seed=2)
    calls = {"n": 0}

    def ctrl_c(*_):
        calls["n"] += 1
        if calls["n"] == 5:  # call 1 is the shape probe: the 1st step of epoch 2
            os.kill(os.getpid(), signal.SIGINT)

    handle = student.register_forward_hook(ctrl_c)
    with pytest.raises(DistillInterrupted, match="--resume") as info:
        distill(teacher, student, cache, to_model_input, config, out_dir=tmp_path)
    assert info.value.exit_code == 130
    handle.remove()
    resumed = distill(
        teacher,
        make_net((4, 8), seed=2),
        cache,
        to_model_input,
        config,
        out_dir=tmp_path,
        resume=True,
    )
    sf, sr = _state(full.student), _state(resumed.student)
    assert all(torch.allclose(sf[k].float(), sr[k].float(), atol=1e-6) for k in sf)
    assert resumed.history["loss"].tolist() == pytest.approx(full.history["loss"].tolist())
    assert resumed.history["step"].tolist() == [3, 6, 9]


def test_resume_with_other_settings_is_refused(make_net, images, to_model_input, tmp_path):
    teacher, cache = _setup(make_net, images, to_model_input)
    config = DistillConfig(loss="kd", epochs=1, batch_size=16, progress=False)
    distill(teacher, make_net((4, 8), seed=2), cache, to_model_input, config, out_dir=tmp_path)
    other = DistillConfig(loss="kd", epochs=1, batch_size=16, lr=0.5, progress=False)
    with pytest.raises(InputError, match=r"lr: 0\.01 -> 0\.5"):
        distill(
            teacher,
            make_net((4, 8)),
            cache,
            to_model_input,
            other,
            out_dir=tmp_path,
            resume=True,
        )
    with pytest.raises(InputError, match="no training state"):
        distill(
            teacher,
            make_net((4, 8)),
            cache,
            to_model_input,
            config,
            out_dir=tmp_path / "none",
            resume=True,
        )


@pytest.mark.parametrize("scheme", list_schemes())
def test_every_scheme_trains(scheme, make_net, images, to_model_input):
    teacher, cache = _setup(make_net, images, to_model_input)
    result = _run(make_net, teacher, cache, to_model_input, scheme=scheme, loss="kd", epochs=1)
    assert np.isfinite(result.history["loss"]).all()
    before = _state(make_net((4, 8), seed=2))  # the student _run starts from
    after = result.student.state_dict()
    changed = [
        k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])
    ]
    assert changed, "no student weight moved: the scheme did not train"
    if scheme != "standard":
        assert any(c.startswith(f"loss_{scheme[:3]}") for c in result.history.columns)


def test_online_mode_runs_the_teacher_every_step(make_net, counting, images, to_model_input):
    teacher = counting(make_net((8, 16), seed=1))
    cache = TeacherCache.build(
        teacher,
        images,
        to_model_input,
        selection=SelectionConfig(size=32),
        config=CacheConfig(outputs=False),
    )
    config = DistillConfig(
        loss="kd,fitnet",
        feature_layers=LAYERS,
        teacher_layers=("model.layer1", "model.layer2"),
        epochs=2,
        batch_size=16,
        online=True,
        progress=False,
    )
    result = distill(teacher, make_net((4, 8), seed=2), cache, to_model_input, config)
    assert result.summary["teacher_forwards"] == 2 * 32
    assert len(teacher.seen) == 2 * 32 + 2  # + the shape probe


def test_steps_override_epochs(make_net, images, to_model_input):
    teacher, cache = _setup(make_net, images, to_model_input)
    result = _run(make_net, teacher, cache, to_model_input, loss="kd", steps=4)
    assert result.summary["steps"] == 4 and result.history["step"].tolist() == [3, 4]


def test_input_errors(make_net, images, to_model_input):
    teacher, cache = _setup(make_net, images, to_model_input)
    with pytest.raises(InputError, match="'layer7' not found"):
        _run(make_net, teacher, cache, to_model_input, feature_layers=("layer7", "layer2"))
    other_classes = make_net((4, 8), classes=3)
    with pytest.raises(InputError, match="same classes"):
        distill(
            teacher, other_classes, cache, to_model_input, DistillConfig(loss="kd", progress=False)
        )
    with pytest.raises(InputError, match="cache holds teacher layers"):
        _run(
            make_net,
            teacher,
            cache,
            to_model_input,
            feature_layers=("layer2",),
            teacher_layers=("stem",),
        )
    with pytest.raises(InputError, match="unknown optimizer"):
        DistillConfig(optimizer="lbfgs")


def test_student_is_handed_back_in_the_standard_layout(make_net, images, to_model_input):
    """Training runs channels-last, but the caller deploys NCHW: 4-D weights come back
    contiguous (a channels-last model is slower on NCHW inputs in eager CPU PyTorch)."""
    teacher, cache = _setup(make_net, images, to_model_input)
    student = _run(make_net, teacher, cache, to_model_input, channels_last=True).student
    weights = [p for p in student.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous() for p in weights)


def test_warmup_ramps_the_rate_then_runs_the_schedule_over_the_rest():
    from ttmpd.distill._optim import make_schedule

    def rates(total, warmup):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
        schedule = make_schedule(optimizer, "cosine", total, warmup)
        out = []
        for _ in range(total):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return np.array(out)

    plain = rates(8, 0)
    assert np.allclose(plain, 2.0 * 0.5 * (1 + np.cos(np.pi * np.arange(8) / 8)))
    warm = rates(12, 4)
    assert np.allclose(warm[:4], 2.0 * np.arange(1, 5) / 4)
    assert np.allclose(warm[4:], plain)  # the cosine runs over the 8 steps left
    with pytest.raises(InputError, match="warmup"):
        rates(8, -1)


def test_warmup_epochs_are_validated_and_change_training(make_net, images, to_model_input):
    for bad in (-1, float("nan"), True):
        with pytest.raises(InputError, match="warmup_epochs"):
            DistillConfig(warmup_epochs=bad)
    teacher, cache = _setup(make_net, images, to_model_input)
    plain = _run(make_net, teacher, cache, to_model_input, loss="kd", epochs=3)
    warm = _run(make_net, teacher, cache, to_model_input, loss="kd", epochs=3, warmup_epochs=1)
    # 40 samples, batch 16: 3 steps an epoch; the first epoch ends at the full rate
    assert warm.history["lr"].iloc[0] == pytest.approx(0.01)
    assert plain.history["lr"].iloc[0] < 0.01
    assert not torch.equal(_state(plain.student)["fc.weight"], _state(warm.student)["fc.weight"])


def test_a_state_saved_without_warmup_resumes_and_a_warmup_change_is_refused(
    make_net, images, to_model_input, tmp_path
):
    assert "warmup_epochs" not in DistillConfig().signature()  # older states match
    teacher, cache = _setup(make_net, images, to_model_input)
    config = DistillConfig(loss="kd", epochs=1, batch_size=16, progress=False)
    distill(teacher, make_net((4, 8), seed=2), cache, to_model_input, config, out_dir=tmp_path)
    other = DistillConfig(loss="kd", epochs=1, batch_size=16, warmup_epochs=0.5, progress=False)
    with pytest.raises(InputError, match=r"warmup_epochs: None -> 0\.5"):
        distill(teacher, make_net((4, 8)), cache, to_model_input, other, out_dir=tmp_path,
                resume=True)  # fmt: skip


def _bn_stats(model):
    return [
        (m.running_mean.clone(), m.running_var.clone())
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]


def test_the_student_ends_with_bn_statistics_of_its_final_weights(make_net, images, to_model_input):
    from ttmpd._bn import adapt_bn

    teacher, cache = _setup(make_net, images, to_model_input)
    adapted = _run(make_net, teacher, cache, to_model_input, loss="kd", epochs=2)
    stale = _run(make_net, teacher, cache, to_model_input, loss="kd", epochs=2, adapt_bn=False)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    weights = {k: v for k, v in _state(adapted.student).items() if not k.endswith(stats)}
    assert all(torch.equal(v, _state(stale.student)[k]) for k, v in weights.items())
    assert adapted.history["adapt_s"].tolist()[0] == 0.0 < adapted.history["adapt_s"].iloc[-1]
    assert (stale.history["adapt_s"] == 0).all()
    fresh = adapt_bn(copy.deepcopy(stale.student), to_model_input(cache.images[0]), 16)
    for (mean, var), (want_mean, want_var) in zip(
        _bn_stats(adapted.student), _bn_stats(fresh), strict=True
    ):
        torch.testing.assert_close(mean, want_mean)
        torch.testing.assert_close(var, want_var)
    assert not all(
        torch.allclose(a[1], b[1])
        for a, b in zip(_bn_stats(stale.student), _bn_stats(fresh), strict=True)
    )
    assert not adapted.student.training
    assert "adapt_bn" not in DistillConfig().signature()  # resumable either way


def test_each_evaluation_sees_adapted_statistics(make_net, images, to_model_input):
    teacher, cache = _setup(make_net, images, to_model_input)
    labels = np.arange(len(images)) % 4
    result = _run(make_net, teacher, cache, to_model_input, loss="kd", epochs=3)
    _run_options.update(eval_data=(images[:30], labels[:30]), eval_epochs={1, 3})
    try:
        evaluated = _run(make_net, teacher, cache, to_model_input, loss="kd", epochs=3)
    finally:
        _run_options.clear()
    assert (evaluated.history["adapt_s"] > 0).tolist() == [True, False, True]
    same = zip(_state(result.student).values(), _state(evaluated.student).values(), strict=True)
    assert all(torch.equal(a, b) for a, b in same)
