"""Finished jobs journaled to disk, so a stopped or failed run resumes where it stood.

The journal is JSON lines: a header ``{"journal": 1, "identity": {...}}`` naming what was
run (a journal of another run is refused, not mixed in), then one ``{"key", "value"}`` line
per finished job, flushed and fsynced as the job finishes. A last line cut short by a kill
is ignored. :func:`run_jobs` skips every job already in the journal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import ensure_writable_dir, read_json_lines
from ..errors import ExecutorError, InputError
from ._jobs import Job, JobOutcome, StepSpan
from ._protocol import Executor

logger = logging.getLogger(__name__)
JOURNAL_VERSION = 1


class JobJournal:
    """An append-only record of finished jobs at ``path`` for the run named by
    ``identity`` (a JSON-serialisable dict; values must be JSON-serialisable too)."""

    def __init__(self, path: str | os.PathLike, identity: dict[str, Any]) -> None:
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity))  # as it reads back

    def load(self) -> dict[str, Any]:
        """Values of the finished jobs by key ({} when there is no journal yet)."""
        if not self.path.exists():
            return {}
        records, _ = read_json_lines(self.path, InputError)
        if records:
            self._check_header(records[0])
        done: dict[str, Any] = {r["key"]: r["value"] for r in records[1:]}
        return done

    def _check_header(self, header: dict) -> None:
        theirs, ours = header.get("identity", {}), self.identity
        diffs = sorted(k for k in {*theirs, *ours} if theirs.get(k) != ours.get(k))
        if header.get("journal") != JOURNAL_VERSION or diffs:
            what = ", ".join(diffs) or "version"
            raise InputError(
                f"{self.path} is the journal of another run (differs in {what}); delete it "
                "to start over, or choose another output folder"
            )

    def append(self, key: str, value: Any) -> None:
        """Record a finished job (creates the journal, with its header, on first use)."""
        new = not self.path.exists()
        if new:
            ensure_writable_dir(self.path)
        else:
            self._truncate_partial_line()
        with open(self.path, "a") as fh:
            if new:
                fh.write(json.dumps({"journal": JOURNAL_VERSION, "identity": self.identity}) + "\n")
            fh.write(json.dumps({"key": key, "value": value}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _truncate_partial_line(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            os.truncate(self.path, data.rfind(b"\n") + 1)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass(frozen=True)
class RunRecord:
    """What :func:`run_jobs` did: values by job key (in job order), the spans of the jobs
    run now (journaled ones have none) and how many came from the journal."""

    values: dict[str, Any]
    spans: tuple[StepSpan, ...]
    resumed: int


def run_jobs(
    executor: Executor,
    jobs: Sequence[Job],
    journal: JobJournal | None = None,
    on_outcome: Callable[[JobOutcome], None] | None = None,
) -> RunRecord:
    """Run the ``jobs`` not yet in ``journal`` on ``executor``, journaling each as it
    finishes. Raises :class:`~ttmpd.errors.ExecutorError` naming the failed jobs after
    every other job has finished (and been journaled): running again retries only those."""
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise InputError("job keys must be unique within a run")
    done = journal.load() if journal is not None else {}
    todo = [job for job in jobs if job.key not in done]
    if done:
        logger.info("%d of %d jobs already finished in %s", len(jobs) - len(todo), len(jobs),
                    journal.path if journal else "")  # fmt: skip
    values, spans, failed = dict(done), [], []
    for outcome in executor.run(todo):
        if on_outcome is not None:
            on_outcome(outcome)
        if not outcome.ok:
            logger.warning("job %s failed: %s", outcome.key, outcome.error)
            failed.append(outcome)
            continue
        if journal is not None:
            journal.append(outcome.key, outcome.value)
        values[outcome.key] = outcome.value
        spans.extend(outcome.spans)
    if failed:
        kept = f"; the {len(values)} finished are kept in {journal.path}" if journal else ""
        first = "; ".join(f"{o.key}: {o.error}" for o in failed[:3])
        raise ExecutorError(
            f"{len(failed)} of {len(jobs)} jobs failed ({first}){kept}; fix the cause and run "
            "again to redo only the failed ones"
        )
    ordered = {key: values[key] for key in keys if key in values}
    return RunRecord(ordered, tuple(spans), len(jobs) - len(todo))
