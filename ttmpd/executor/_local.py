"""``LocalExecutor``: every job in this process, one after the other."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from ..errors import one_line
from ._jobs import Job, JobOutcome, run_step

logger = logging.getLogger(__name__)


class LocalExecutor:
    """Runs jobs sequentially in this process, in the given order. Resources are not
    enforced: only one step runs at a time, so no two measurements share a device."""

    name = "local"

    def run(self, jobs: Sequence[Job]) -> Iterator[JobOutcome]:
        for job in jobs:
            previous = None
            try:
                for step in job.steps:
                    previous = run_step(step, job.key, previous, *job.args)
            except Exception as exc:  # the job's own code failed: report it, run the others
                logger.debug("job %s failed", job.key, exc_info=True)
                yield JobOutcome(job.key, error=one_line(exc))
                continue
            value, spans = previous
            yield JobOutcome(job.key, value, spans=spans)

    def capacity(self, device: str) -> float:
        return 1.0  # this machine is the device; one step at a time

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
