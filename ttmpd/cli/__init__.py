"""The ``ttmpd`` command line. Each command lives in its own module and only calls library
functions; this module wires them together and turns errors into one line and exit code 2.

To add a command: write ``ttmpd/cli/<name>.py`` with ``register(subparsers)`` that adds a
parser and sets ``func`` (a callable taking the parsed namespace and returning an exit code),
then list the module in ``_COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .._version import __version__
from ..errors import TtmpdError

_COMMAND_MODULES = (
    "demo_cmd",
    "profile",
    "lut_cmd",
    "predict_cmd",
    "prune_cmd",
    "pareto_cmd",
    "models_cmd",
    "data_cmd",
    "train_base_cmd",
    "evaluate_cmd",
    "distill_cmd",
    "run_cmd",
)


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), like every other ttmpd error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="ttmpd",
        description="Hardware-aware latency modeling for test-time pruning and distillation.",
    )
    parser.add_argument("--version", action="version", version=f"ttmpd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_OneLineParser
    )
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def passive_omp_wait() -> None:
    """Make OpenMP worker threads sleep rather than spin between parallel regions, unless
    the user chose a policy (``OMP_WAIT_POLICY``) or torch is already loaded (its OpenMP
    runtime reads the variable once, when it starts).

    With libgomp's default spin-waiting, a 2-thread training step of a pruned ResNet-20 took
    4.4 s instead of 0.4 s while one other process kept a core of a 2-core host busy
    (docs/design/avx2-conv-backward.md, "threads and stalls")."""
    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _new_folders(out: object) -> list[Path]:
    """The folders of ``--out`` that do not exist yet (deepest first): a failed command
    removes those it created and left empty."""
    if not isinstance(out, str) or not out:
        return []
    path = Path(out).absolute()
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove each folder (deepest first) that now holds only empty folders."""
    for folder in folders:
        if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)


#: Options that name an input file, and the suffixes that make a value a file path (a value
#: such as ``resnet18``, ``mnist`` or ``pkg.mod:factory`` names something else).
_INPUT_OPTIONS = ("model", "data", "lut", "predictor", "teacher", "student", "plan")
_FILE_SUFFIXES = (".pt", ".pth", ".npz", ".parquet", ".pq", ".csv", ".json", ".py")


def _missing_input(args: argparse.Namespace) -> str:
    """The first input file the options name that does not exist, checked before the
    command imports torch (seconds), so a typo is reported at once."""
    for name in _INPUT_OPTIONS:
        value = getattr(args, name, None)
        if not isinstance(value, str) or ":" in value or "@" in value:
            continue
        if value.lower().endswith(_FILE_SUFFIXES) and not Path(value).exists():
            hint = "; build one with ttmpd profile" if name == "lut" else ""
            return f"--{name} {value} not found; check the path{hint}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    passive_omp_wait()
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    missing = _missing_input(args)
    if missing:
        print(f"ttmpd {args.command}: error: {missing}", file=sys.stderr)
        return 2
    created = _new_folders(getattr(args, "out", None))
    try:
        return int(args.func(args) or 0)
    except TtmpdError as exc:
        print(f"ttmpd {args.command}: error: {exc}", file=sys.stderr)
        _remove_if_empty(created)
        return int(getattr(exc, "exit_code", 2))
    except BrokenPipeError:  # e.g. `ttmpd lut show ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"ttmpd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
