"""The `ttmpd data` command, driven through a local parser with data_cmd.register."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ttmpd.cli import data_cmd
from ttmpd.data import list_corruptions, load_npz
from ttmpd.errors import TtmpdError


def run(argv: list[str]) -> int:
    """Parse with a parser holding only the data command; mimic ttmpd.cli.main on errors."""
    parser = argparse.ArgumentParser(prog="ttmpd")
    data_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TtmpdError as exc:
        print(f"error: {exc}")
        return 2


def test_list_json_has_every_corruption(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["data", "list", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in payload["corruptions"]]
    assert names == list_corruptions()
    fog = payload["corruptions"][names.index("fog")]
    assert fog["severities"]["3"] == {"strength": 0.75, "decay": 2.5}


def test_list_table_mentions_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "gaussian_blur  [blur, fixed]" in out and "sigma (px@32): 0.4  0.6" in out


def test_make_stream_writes_a_loadable_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "stream.npz"
    argv = ["data", "make-stream", "--dataset", "mnist", "--corruption", "fog"]
    argv += ["--severity", "3", "--seed", "0", "--out", str(out), "--limit", "20"]
    assert run(argv) == 0
    assert "20 images 28x28x1" in capsys.readouterr().out
    assert load_npz(out, labels=True).labels.shape == (20,)


def test_make_stream_error_is_one_line(tmp_path: Path, capsys) -> None:
    argv = ["data", "make-stream", "--corruption", "fog", "--severity", "9"]
    assert run([*argv, "--out", str(tmp_path / "s.npz")]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "severity 9 is out of range" in out


def test_preview_png_has_a_row_per_corruption(tmp_path: Path) -> None:
    png = tmp_path / "grid.png"
    assert run(["data", "list", "--preview", str(png), "--dataset", "digits"]) == 0
    with Image.open(png) as image:
        width, height = image.size
    assert height > 2 * width  # 18 rows x 6 columns
    assert np.asarray(Image.open(png)).std() > 10


def test_command_is_registered_in_the_main_cli() -> None:
    from ttmpd.cli import _COMMAND_MODULES

    assert "data_cmd" in _COMMAND_MODULES
