"""Output checks before long work: nothing created, one line when the path cannot be written."""

import os

import pytest

from ttmpd._io import check_writable
from ttmpd.cli import main
from ttmpd.errors import OutputError


def test_check_writable_creates_nothing_and_names_the_blocker(tmp_path):
    check_writable(tmp_path / "a" / "b" / "out.csv")  # missing folders are fine
    assert list(tmp_path.iterdir()) == []  # ... and are not created
    (tmp_path / "blocker").write_text("a file\n")
    with pytest.raises(OutputError, match="blocker is a file"):
        check_writable(tmp_path / "blocker" / "sub" / "out.csv")


def test_check_writable_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root ignores the mode bits
        pytest.skip("running as root: a read-only folder is still writable")
    with pytest.raises(OutputError, match="not writable"):
        check_writable(locked / "new" / "out.csv")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pareto", "--budgets", "0,1.5"], "cannot parse budgets '0,1.5'; give values in (0, 1)"),
        (["pareto", "--budgets", "0.5", "--out", "{blocker}/p"], "is a file"),
        (["prune", "--budget", "0.5", "--out", "{blocker}/p"], "is a file"),
    ],
)
def test_bad_outputs_fail_before_any_work(argv, message, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file\n")
    (tmp_path / "in").mkdir()
    garbage = tmp_path / "in" / "model.pt"  # exists, but loading it would fail
    garbage.write_text("not a checkpoint\n")
    base = ["--model", str(garbage), "--data", "mnist", "--lut", str(garbage)]
    argv = [a.replace("{blocker}", str(tmp_path / "blocker")) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o")]
    # the inputs cannot be loaded: the output check must come before them to be seen
    assert main([*argv, *base]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "in"]


@pytest.mark.parametrize(
    "argv",
    [
        ["distill", "--teacher", "{ref}", "--student", "nope.pt", "--data", "mnist"],
        ["run", "--model", "{ref}", "--data", "no-such-stream.npz", "--backend", "fake"],
    ],
)
def test_a_failed_command_leaves_no_empty_output_folder(argv, tmp_path, capsys):
    from ttmpd.base import reference_checkpoint_path

    argv = [a.replace("{ref}", str(reference_checkpoint_path())) for a in argv]
    out = tmp_path / "new" / "out"
    assert main([*argv, "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither out nor the parent it created
    kept = tmp_path / "kept"  # a folder that existed before is left alone
    kept.mkdir()
    assert main([*argv, "--out", str(kept)]) == 2
    assert kept.is_dir()


def test_a_missing_input_file_is_reported_before_torch_is_imported(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from ttmpd.cli import main; rc = main(sys.argv[1:]); "
            "print('torch' in sys.modules, file=sys.stderr); sys.exit(rc)")  # fmt: skip
    argv = ["prune", "--model", "nope.pt", "--data", "mnist", "--lut", "x.parquet",
            "--budget", "0.5", "--out", str(tmp_path / "o")]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2
    error, imported = done.stderr.strip().splitlines()
    assert error == "ttmpd prune: error: --model nope.pt not found; check the path"
    assert imported == "False"
