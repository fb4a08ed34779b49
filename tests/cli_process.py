"""Run ``python -m ttmpd ARGV`` in a process of its own without paying its imports each time.

A ``forkserver`` process imports :mod:`ttmpd.cli` once (torch, pandas, scikit-learn: ~2 s);
each run is forked from it, so it is still a separate process with its own working
directory, environment, file descriptors 1 and 2 and exit code, as the real entry point
has. The server never runs a command, so no child inherits a thread pool or a logging
setup. Environment variables read at import time (``PYTHONPATH``) do not reach a forked
child: run those cases with :mod:`subprocess`.

The child writes the code ``main`` returned to a file before it exits, and that file is
what the caller reads: under load the forkserver can lose a child's exit status and report
255 (CPython issue 140867). Only where the child died before writing it (a crash, an
uncaught exception) is the process's own exit code used.
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


def _child(
    argv: list[str], cwd: str, env: dict[str, str | None], out: str, err: str, status: str
) -> None:
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

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors exit from inside main
        if exc.code is not None and not isinstance(exc.code, int):
            raise
        code = exc.code or 0
    sys.stdout.flush()
    sys.stderr.flush()
    Path(status).write_text(str(code))
    sys.exit(code)


def run_cli(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str | None], timeout_s: float
) -> subprocess.CompletedProcess:
    """``argv`` run by the CLI in a forked child; returns what ``subprocess.run`` would
    (``returncode``, ``stdout``, ``stderr`` as text). ``env``: variables set (or, where
    ``None``, removed) in the child before the command runs. Raises ``TimeoutError``
    after ``timeout_s`` seconds."""
    with tempfile.TemporaryDirectory(prefix="ttmpd-cli-") as d:
        out, err, status = (os.path.join(d, name) for name in ("out", "err", "status"))
        child = _CONTEXT.Process(
            target=_child, args=(list(argv), str(cwd), dict(env), out, err, status)
        )
        child.start()
        child.join(timeout_s)
        if child.is_alive():
            child.kill()
            child.join()
            raise TimeoutError(f"ttmpd {' '.join(argv)} ran past {timeout_s} s")
        written = Path(status).read_text() if os.path.exists(status) else ""
        return subprocess.CompletedProcess(
            ["ttmpd", *argv],
            int(written) if written else child.exitcode,
            Path(out).read_text(),
            Path(err).read_text(),
        )
