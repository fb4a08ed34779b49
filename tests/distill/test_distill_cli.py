"""``ttmpd distill`` end to end on a tiny corrupted MNIST stream and a pruned ResNet-20."""

from __future__ import annotations

import json

import pytest
import torch

from ttmpd.cli import main
from ttmpd.cli.distill_cmd import LOSS_NAMES
from ttmpd.distill import list_losses
from ttmpd.models import create_model, load_checkpoint, save_checkpoint

NORM = ((0.1307,), (0.3081,))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from ttmpd.data import make_stream
    from ttmpd.pruning import apply_plan, random_plan

    root = tmp_path_factory.mktemp("distill_cli")
    torch.manual_seed(0)
    teacher = create_model("resnet20", in_channels=1).eval()
    save_checkpoint(
        root / "base.pt",
        teacher,
        arch="resnet20",
        arch_kwargs={"in_channels": 1},
        input_shape=(1, 28, 28),
        normalization=NORM,
    )
    x = torch.randn(1, 1, 28, 28)
    student = apply_plan(teacher, x, random_plan(teacher, x, None, 0.5, seed=0))
    save_checkpoint(root / "student.pt", student, input_shape=(1, 28, 28), normalization=NORM)
    make_stream("mnist", "fog", 3, 0, root / "stream.npz", limit=80)
    return root


def _args(files, out, *extra):
    return [
        "distill",
        "--teacher",
        str(files / "base.pt"),
        "--student",
        str(files / "student.pt"),
        "--data",
        str(files / "stream.npz"),
        "--out",
        str(out),
        "--finetune-samples",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-progress",
        *extra,
    ]


def test_distill_writes_student_history_and_summary(files, tmp_path, capsys):
    out = tmp_path / "distilled"
    code = main(
        _args(files, out, "--loss", "kd:0.9,at:1000,ce:0.1", "--select", "balanced", "--json")
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["subset"] == 32 and summary["held_out"] == 80 - 32
    assert summary["teacher_layers"] == ["layer1", "layer2", "layer3"]
    assert 0 <= summary["accuracy_after"] <= 1
    for name in ("student.pt", "history.csv", "summary.json", "train_state.pt"):
        assert (out / name).is_file()
    checkpoint = load_checkpoint(out / "student.pt")
    assert checkpoint.metadata["distill"]["loss"] == "kd:0.9,at:1000,ce:0.1"
    assert checkpoint.normalization == NORM
    # --resume on a finished run trains nothing more and reports the same result
    assert (
        main(
            _args(
                files,
                out,
                "--loss",
                "kd:0.9,at:1000,ce:0.1",
                "--select",
                "balanced",
                "--resume",
                "--json",
            )
        )
        == 0
    )
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy_after"] == summary["accuracy_after"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--loss", "kd,bogus"], "unknown distillation loss 'bogus'; choose one of: ab, at"),
        (["--loss", "at", "--features", "layer1,nope"], "feature layer 'nope' not found"),
        (["--loss", "kd:x"], "is not a number"),
        (["--scheme", "gan"], "unknown training scheme 'gan'"),
        (["--warmup-epochs", "-1"], "warmup_epochs must be >= 0"),
    ],
)
def test_bad_input_is_one_line_exit_2(files, tmp_path, capsys, extra, message):
    assert main(_args(files, tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_loss_names_in_help_are_in_sync():
    assert LOSS_NAMES.split(", ") == list_losses()


def test_student_folder_and_embedded_data_are_accepted(files, tmp_path, capsys):
    """The forms a user tries after ``ttmpd prune --out pruned/``: the folder as --student,
    and ``--data mnist`` as ``ttmpd prune``/``run`` take it."""
    pruned = tmp_path / "pruned"
    pruned.mkdir()
    (pruned / "model.pt").write_bytes((files / "student.pt").read_bytes())
    args = _args(files, tmp_path / "o", "--json", "--steps", "1")
    args[args.index("--student") + 1] = str(pruned)
    args[args.index("--data") + 1] = "mnist"
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["subset"] == 32 and summary["held_out"] == 4000 - 32  # the test split
    # the student trained is the folder's model: same architecture out
    trained = load_checkpoint(tmp_path / "o" / "student.pt").model
    original = load_checkpoint(files / "student.pt").model
    assert [p.shape for p in trained.parameters()] == [p.shape for p in original.parameters()]
