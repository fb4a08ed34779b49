"""Choosing an executor by name (the CLI's ``--executor``)."""

from __future__ import annotations

from ..errors import InputError
from ._local import LocalExecutor
from ._ray import RayConfig, RayExecutor

EXECUTORS = ("local", "ray")


def make_executor(name: str, ray: RayConfig | None = None) -> LocalExecutor | RayExecutor:
    """``local`` (this process, one job at a time) or ``ray`` (tasks on a cluster as
    ``ray`` says; nothing is started until the first run)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(ray)
    raise InputError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
