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
