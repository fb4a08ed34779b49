"""Every ``ttmpd ...`` command line in the README and the docs parses with today's CLI.

Command lines are read from fenced code blocks (backslash continuations joined, ``#``
comments dropped). A fragment ``ttmpd CMD ... --more`` stands for the page's last full
``ttmpd CMD`` line plus ``--more``; one with no such line is skipped. Parsing is enough to catch a
renamed command, a removed option or a wrong value type; running them needs their inputs.
"""

import re
import shlex
from pathlib import Path

import pytest

from ttmpd.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
#: docs/cli.md is the parsers' own --help output (tests/test_cli_docs.py checks it)
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md")
                                     if p.name != "cli.md")]  # fmt: skip
_FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)


def _commands(page: Path) -> list[str]:
    found, full = [], {}
    for block in _FENCE.findall(page.read_text()):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if not line.startswith("ttmpd ") or re.match(r"ttmpd [\w-]+:", line):
                continue  # not a command, or printed output ("ttmpd pareto: error: ...")
            line = re.split(r"\s#", line, maxsplit=1)[0]  # a trailing comment
            line = line.split(" | ")[0].strip()
            head, dots, rest = line.partition(" ... ")
            if dots:
                if head not in full:
                    continue
                line = f"{full[head]} {rest}"
            else:
                words = line.split()
                full[" ".join(words[:2])] = line
                full[" ".join(words[:3])] = line  # `ttmpd lut fit ...`
            found.append(line)
    return found


CASES = [(page.relative_to(ROOT).as_posix(), cmd) for page in PAGES for cmd in _commands(page)]


def test_the_docs_hold_commands_to_check():
    pages = {page for page, _ in CASES}
    assert len(CASES) >= 20 and "README.md" in pages and "docs/guide/pruning.md" in pages


@pytest.mark.parametrize(("page", "command"), CASES, ids=[f"{p}:{c[:40]}" for p, c in CASES])
def test_documented_command_parses(page, command, capsys):
    argv = shlex.split(command)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help and --version exit 0
            pytest.fail(f"{page}: `{command}` does not parse: {capsys.readouterr().err}")
