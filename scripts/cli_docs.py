"""Write docs/cli.md from the argparse parsers, so the reference cannot drift from the CLI.

python scripts/cli_docs.py           # rewrite docs/cli.md
python scripts/cli_docs.py --check   # exit 1 if docs/cli.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ttmpd.cli import build_parser

OUT = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse exposes subparsers only through its actions
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _section(name: str, parser: argparse.ArgumentParser, summary: str, depth: int) -> list[str]:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=92)
    lines = [f"{'#' * depth} `{name}`", ""]
    if summary:
        lines += [summary, ""]
    lines += ["```text", parser.format_help().rstrip(), "```", ""]
    helps = _help_of(parser)
    for child, sub in _subcommands(parser).items():
        lines += _section(f"{name} {child}", sub, helps.get(child, ""), min(depth + 1, 4))
    return lines


def render() -> str:
    parser = build_parser()
    parser.prog = "ttmpd"
    lines = [
        "# Command-line reference",
        "",
        "Generated from the argparse parsers by `python scripts/cli_docs.py`; a test fails",
        "when this page and the CLI disagree. Every command exits 2 with one line on stderr",
        "on bad input. `ttmpd COMMAND --help` prints the same text.",
        "",
    ]
    helps = _help_of(parser)
    lines += ["| command | what it does |", "|---|---|"]
    lines += [f"| `ttmpd {c}` | {helps.get(c, '')} |" for c in _subcommands(parser)]
    lines.append("")
    for child, sub in _subcommands(parser).items():
        lines += _section(f"ttmpd {child}", sub, helps.get(child, ""), 2)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date; run python scripts/cli_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
