"""Old option spellings keep working for one release and say which spelling to use."""

import pytest

from ttmpd.cli import build_parser

BASE = {
    "distill": ["--teacher", "t.pt", "--student", "s.pt", "--data", "mnist", "--out", "o"],
    "prune": [
        "--model",
        "m.pt",
        "--data",
        "mnist",
        "--lut",
        "l.parquet",
        "--budget",
        "0.5",
        "--out",
        "o",
    ],
    "pareto": ["--model", "m.pt", "--data", "mnist", "--lut", "l.parquet", "--out", "o"],
}


@pytest.mark.parametrize(
    ("command", "old", "new", "dest"),
    [
        ("distill", "--subset", "--finetune-samples", "finetune_samples"),
        ("prune", "--calib-samples", "--proxy-samples", "proxy_samples"),
        ("pareto", "--calib-samples", "--proxy-samples", "proxy_samples"),
    ],
)
def test_old_spelling_sets_the_new_option_and_says_so(command, old, new, dest, capsys):
    parser = build_parser()
    args = parser.parse_args([command, *BASE[command], old, "48"])
    assert getattr(args, dest) == 48
    assert f"{old} is deprecated; use {new}" in capsys.readouterr().err
    again = parser.parse_args([command, *BASE[command], new, "48"])
    assert getattr(again, dest) == 48 and capsys.readouterr().err == ""
    assert old not in parser._subparsers._group_actions[0].choices[command].format_help()
