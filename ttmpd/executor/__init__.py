"""Where jobs run: in this process, or as tasks on a Ray cluster.

A :class:`Job` is a chain of :class:`Step` s, each with the :class:`Resources` it holds (CPUs;
the device it measures on). :func:`run_jobs` runs jobs on an :class:`Executor`
(:class:`LocalExecutor` or :class:`RayExecutor`), journaling finished ones in a
:class:`JobJournal` so a rerun skips them. Ray is imported only when a Ray executor runs.
"""

from ._jobs import Job as Job
from ._jobs import JobOutcome as JobOutcome
from ._jobs import Resources as Resources
from ._jobs import Step as Step
from ._jobs import StepSpan as StepSpan
from ._jobs import peak_concurrency as peak_concurrency
from ._journal import JobJournal as JobJournal
from ._journal import RunRecord as RunRecord
from ._journal import run_jobs as run_jobs
from ._local import LocalExecutor as LocalExecutor
from ._protocol import Executor as Executor
from ._ray import RayConfig as RayConfig
from ._ray import RayExecutor as RayExecutor
from ._select import EXECUTORS as EXECUTORS
from ._select import make_executor as make_executor

__all__ = [
    "EXECUTORS",
    "Executor",
    "Job",
    "JobJournal",
    "JobOutcome",
    "LocalExecutor",
    "RayConfig",
    "RayExecutor",
    "Resources",
    "RunRecord",
    "Step",
    "StepSpan",
    "make_executor",
    "peak_concurrency",
    "run_jobs",
]
