"""The ``Executor`` protocol: what the sweep and fleet profiling need from a runner."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from ._jobs import Job, JobOutcome


class Executor(Protocol):
    """Runs independent jobs and yields their outcomes as they finish (any order).

    Implementations check before starting anything that they can place every step (a
    device resource that no worker carries raises :class:`~ttmpd.errors.ExecutorError`),
    so a bad request fails before a file is written. A job whose code raises is reported
    as a failed :class:`JobOutcome`, not raised; a worker that dies is retried where the
    executor can.
    """

    name: str

    def run(self, jobs: Sequence[Job]) -> Iterator[JobOutcome]: ...

    def capacity(self, device: str) -> float:
        """How many steps holding ``device`` can run at once (units of the resource)."""
        ...

    def close(self) -> None: ...
