"""Run ``python -m ttmpd ARGV`` in a process of its own without paying its imports each time.

A ``forkserver`` process imports :mod:`ttmpd.cli` once (torch, pandas, scikit-learn: ~2 s);
each run is forked from it, so it is still a separate process with its own working
directory, environment, file descriptors 1 and 2 and exit code, as the real entry point
has. The server never runs a command, so no child inherits a thread pool or a logging
setup. Environment variables read at import time (``PYTHONPATH``) do not reach a forked
child: run those cases with :mod:`subprocess`.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(
    ["ttmpd.cli", "ttmpd.lut", "ttmpd.models", "ttmpd.pruning", "ttmpd.profiler", "cli_process"]
)


def _child(argv: list[str], cwd: str, env: dict[str, str | None], out: str, err: str) -> None:
    os.chdir(cwd)
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = ["ttmpd", *argv]
    from ttmpd.cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def run_cli(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str | None], timeout_s: float
) -> subprocess.CompletedProcess:
    """``argv`` run by the CLI in a forked child; returns what ``subprocess.run`` would
    (``returncode``, ``stdout``, ``stderr`` as text). ``env``: variables set (or, where
    ``None``, removed) in the child before the command runs. Raises ``TimeoutError``
    after ``timeout_s`` seconds."""
    with tempfile.TemporaryDirectory(prefix="ttmpd-cli-") as d:
        out, err = os.path.join(d, "out"), os.path.join(d, "err")
        child = _CONTEXT.Process(target=_child, args=(list(argv), str(cwd), dict(env), out, err))
        child.start()
        child.join(timeout_s)
        if child.is_alive():
            child.kill()
            child.join()
            raise TimeoutError(f"ttmpd {' '.join(argv)} ran past {timeout_s} s")
        return subprocess.CompletedProcess(
            ["ttmpd", *argv],
            child.exitcode,
            Path(out).read_text(),
            Path(err).read_text(),
        )
