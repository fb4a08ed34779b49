"""docs/cli.md is generated from the parsers; it must match them."""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_up_to_date():
    done = subprocess.run(
        [sys.executable, "scripts/cli_docs.py", "--check"], cwd=ROOT, capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_cli_reference_lists_every_command_and_option():
    sys.path.insert(0, str(ROOT / "scripts"))
    from cli_docs import render

    from ttmpd.cli import build_parser

    text = render()
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    for name, parser in sub.choices.items():
        assert f"## `ttmpd {name}`" in text
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:  # deprecated spellings are hidden
                continue
            for flag in action.option_strings:
                assert flag in text, (name, flag)
