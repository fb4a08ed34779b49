"""Jobs and their records: what an executor runs and what it reports back.

A :class:`Job` is a short chain of :class:`Step` s. The first step is called with the job's
``args``; every later step with the previous step's result followed by the same ``args``.
Each step declares the :class:`Resources` it holds while it runs, so one job can search
and fine-tune on any CPU and then measure while holding its device.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class Resources:
    """What a step holds while it runs.

    ``cpus``: logical CPUs (fractions allowed). ``device``: the name of a custom cluster
    resource (e.g. ``device:3f2a9c01b7de``) of which the step holds one unit, so two steps
    naming the same device never run at the same time; None for work that measures nothing.
    """

    cpus: float = 1.0
    device: str | None = None

    def __post_init__(self) -> None:
        if self.cpus < 0:
            raise InputError(f"a step's cpus must be >= 0, got {self.cpus}")
        if self.device is not None and not self.device.strip():
            raise InputError("a device resource name must not be empty")


@dataclass(frozen=True)
class Step:
    """One call of a job: ``fn``, the resources it holds and a name for its spans."""

    fn: Callable[..., Any]
    resources: Resources = Resources()
    name: str = "step"


@dataclass(frozen=True)
class Job:
    """A unit of independent work, identified by ``key`` (unique within a run; the journal
    records finished jobs by it)."""

    key: str
    steps: tuple[Step, ...]
    args: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.steps:
            raise InputError(f"job {self.key!r} has no steps")


@dataclass(frozen=True)
class StepSpan:
    """When and where a step ran: wall-clock start and end (s since the epoch), host, pid."""

    job: str
    step: str
    start_s: float
    end_s: float
    host: str
    pid: int


@dataclass(frozen=True)
class JobOutcome:
    """A finished job: its last step's ``value``, or a one-line ``error``; its spans."""

    key: str
    value: Any = None
    error: str = ""
    spans: tuple[StepSpan, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.error


def run_step(
    step: Step, key: str, previous: tuple[Any, tuple[StepSpan, ...]] | None, *args: Any
) -> tuple[Any, tuple[StepSpan, ...]]:
    """Call one step (``previous``: the prior step's ``(value, spans)``, None for the first);
    returns ``(value, spans so far)``. Executors run every step through this function."""
    start = time.time()
    if previous is None:
        value, spans = step.fn(*args), ()
    else:
        value, spans = step.fn(previous[0], *args), previous[1]
    span = StepSpan(key, step.name, start, time.time(), socket.gethostname(), os.getpid())
    return value, (*spans, span)


def peak_concurrency(spans: Sequence[StepSpan]) -> int:
    """The most spans running at one instant (a span ending as another starts does not
    overlap it)."""
    events = sorted([(s.start_s, 1) for s in spans] + [(s.end_s, -1) for s in spans],
                    key=lambda e: (e[0], e[1]))  # fmt: skip
    peak = running = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak
