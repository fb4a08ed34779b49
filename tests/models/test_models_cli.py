"""``ttmpd models``: table and JSON listing of the zoo."""

import argparse
import importlib
import json

import pytest

from ttmpd.cli import models_cmd
from ttmpd.models import list_models


def _run_local(argv):
    """Parse with a parser holding only our command (independent of the other commands)."""
    parser = argparse.ArgumentParser(prog="ttmpd")
    models_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_json_lists_every_model(capsys):
    assert _run_local(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list_models()
    by_name = {row["name"]: row for row in rows}
    assert by_name["resnet18"]["default_num_classes"] == 1000
    assert by_name["resnet20"]["default_num_classes"] == 10
    assert by_name["resnet18"]["params_m"] == pytest.approx(11.69, rel=0.01)
    assert by_name["resnet50"]["num_params"] == 25_557_032
    assert all(row["in_channels"] == 3 and row["summary"] for row in rows)


def test_table_has_a_line_per_model(capsys):
    assert _run_local(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "classes", "params(M)"]
    assert [line.split()[0] for line in lines[1:]] == list_models()
    assert "11.69" in next(line for line in lines if line.startswith("resnet18 "))


def test_through_the_real_entry_point(capsys):
    for other in ("profile", "lut_cmd"):
        try:
            importlib.import_module(f"ttmpd.cli.{other}")
        except ImportError as exc:
            pytest.skip(f"ttmpd.cli.{other} is not importable yet ({exc})")
    from ttmpd.cli import main

    assert main(["models", "--json"]) == 0
    assert {row["name"] for row in json.loads(capsys.readouterr().out)} == set(list_models())


MY_NET = """
import torch
from torch import nn


class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 7)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def make():
    torch.manual_seed(3)
    return MyNet()
"""


def test_save_makes_a_checkpoint_of_your_own_factory_that_loads_anywhere(tmp_path):
    import subprocess
    import sys

    import torch

    (tmp_path / "mynet.py").write_text(MY_NET)
    out = tmp_path / "base.pt"
    spec = f"{tmp_path / 'mynet.py'}:make"
    argv = ["models", "save", "--model", spec, "--input-shape", "1,1,12,12",
            "--mean", "0.5", "--std", "0.25", "--out", str(out)]  # fmt: skip
    assert _run_local(argv) == 0
    # a fresh process, another working directory, no PYTHONPATH: the file is re-imported
    code = (
        "import torch; from ttmpd.models import load_checkpoint\n"
        f"c = load_checkpoint({str(out)!r})\n"
        "print(c.input_shape, c.num_classes, c.normalization, type(c.model).__name__)\n"
        "torch.save(c.model(torch.ones(1, 1, 12, 12)), 'y.pt')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path.parent, text=True,
                          capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(1,", "12,", "12)", "7", "((0.5,),", "(0.25,))", "MyNet"]
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("mynet_check", tmp_path / "mynet.py")
    mynet = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mynet)
    expected = mynet.make()(torch.ones(1, 1, 12, 12))
    torch.testing.assert_close(torch.load(tmp_path.parent / "y.pt"), expected)


def test_a_checkpoint_whose_factory_file_is_gone_says_so(tmp_path):
    from ttmpd.errors import ModelLoadError
    from ttmpd.models import load_checkpoint

    (tmp_path / "gone.py").write_text(MY_NET)
    out = tmp_path / "base.pt"
    spec = f"{tmp_path / 'gone.py'}:make"
    assert _run_local(["models", "save", "--model", spec, "--input-shape", "1,1,8,8",
                       "--out", str(out)]) == 0  # fmt: skip
    (tmp_path / "gone.py").unlink()
    with pytest.raises(ModelLoadError, match=r"gone\.py, which is gone"):
        load_checkpoint(out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mean", "0.5"], "--mean and --std together"),
        (["--mean", "a", "--std", "1"], "comma-separated numbers"),
    ],
)
def test_save_refuses_bad_input_and_writes_nothing(tmp_path, extra, message):
    from ttmpd.errors import InputError

    out = tmp_path / "base.pt"
    argv = ["models", "save", "--model", "resnet20", "--input-shape", "1,3,32,32",
            "--out", str(out), *extra]  # fmt: skip
    with pytest.raises(InputError, match=message):
        _run_local(argv)
    assert not out.exists()


def test_commands_that_need_a_checkpoint_name_the_command_that_makes_one():
    from ttmpd.errors import ModelLoadError
    from ttmpd.models import load_checkpoint

    with pytest.raises(ModelLoadError, match=r"ttmpd models save --model mynet\.py:make"):
        load_checkpoint("mynet.py:make")
    with pytest.raises(ModelLoadError, match="not found; check the path"):
        load_checkpoint("missing.pt")
