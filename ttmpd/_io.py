"""Atomic file writes: write next to the target, fsync, then rename over it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path``'s parent directory and check it is writable, or raise OutputError."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create directory {parent}: {exc.strerror}; choose another output path"
        ) from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"directory {parent} is not writable; choose another output path")
    if target.is_dir():
        raise OutputError(f"{target} is a directory; give a file path")
    return target


def check_writable(path: str | os.PathLike) -> None:
    """Raise OutputError unless ``path`` could be written later: its nearest existing
    ancestor is a writable directory and no existing component of its parent is a file.
    Creates nothing, so a command can check its outputs before long work and leave no
    empty folder behind when it fails."""
    parent = Path(path).absolute().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create directory {parent}: {probe} is a file; choose another "
                          "output path")  # fmt: skip
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"directory {probe} is not writable; choose another output path")


def read_json_lines(path: str | os.PathLike, error: type[Exception]) -> tuple[list[Any], int]:
    """The records of a JSON-lines journal and the byte length of its complete lines.

    A last line cut short by a kill mid-write is ignored (and left out of the length, so the
    caller can truncate it away before appending); a corrupted complete line raises
    ``error`` naming it."""
    records, complete = [], 0
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh):
            if not raw.endswith(b"\n"):
                break  # killed mid-write
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError:
                raise error(
                    f"journal {path} line {n + 1} is corrupted; fix or delete that line"
                ) from None
            complete += len(raw)
    return records, complete


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left untouched, so a
    reader never sees a half-written file.
    """
    target = ensure_writable_dir(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; match a normal open()
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
