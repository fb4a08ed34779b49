"""``RayExecutor``: jobs as Ray tasks, on a cluster or on a local one started for the run.

Every step is one task with explicit resources: ``num_cpus`` and, for a step that
measures, one unit of its device's custom resource (``{"device:<id>": 1}``), so Ray never
runs two measuring steps on one device at once while search and fine-tuning run in
parallel anywhere. A job's steps are chained by passing the previous task's result
(Ray starts a step when its input is ready). Large arguments shared by many jobs (the
model, the proxy images) are put in the object store once.

A task whose worker or node dies is retried up to ``max_retries`` times; an exception
raised by the job's own code is deterministic and is reported, not retried.

Ray is imported lazily: ``import ttmpd`` never imports it.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExecutorError, InputError, one_line
from ._jobs import Job, JobOutcome, Resources, run_step

logger = logging.getLogger(__name__)
INSTALL_HINT = "install the ray extra: pip install 'ttmpd[ray]' -c constraints.txt"


def import_ray():
    """The ``ray`` module, or :class:`ExecutorError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"Ray is not installed; {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class RayConfig:
    """Where and how to run.

    ``address``: a running cluster (``host:port`` of its head, ``ray://host:port`` for Ray
    Client, or ``auto``); None starts a local cluster for the run (or joins the one this
    process already started) whose node carries ``local_resources`` (e.g. the device
    resource: this machine is then the device) and ``num_cpus`` CPUs (None: all).
    ``max_retries``: retries of a task whose worker died. ``connect_timeout_s``: how long
    to wait for the head's port before giving up.
    """

    address: str | None = None
    max_retries: int = 3
    num_cpus: int | None = None
    local_resources: tuple[tuple[str, float], ...] = field(default=())
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise InputError(f"max_retries must be >= 0, got {self.max_retries}")


def check_reachable(address: str, timeout_s: float) -> None:
    """Raise :class:`ExecutorError` unless the head's TCP port at ``address`` answers."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"cannot parse Ray address {address!r}; give host:port, e.g. "
                            "10.0.0.5:6379, or ray://host:10001")  # fmt: skip
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ExecutorError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start its "
            "head with `ray start --head` or fix --ray-address"
        ) from None


def _is_custom(resource: str) -> bool:
    """A resource a user gave a node (not CPUs, memory or Ray's own node labels)."""
    builtin = ("CPU", "GPU", "TPU", "memory", "object_store_memory")
    return resource not in builtin and not resource.startswith(("node:", "accelerator_type:"))


class RayExecutor:
    """Runs jobs as Ray tasks (see the module docstring). Use as a context manager: a local
    cluster started by :meth:`connect` is shut down on exit; a joined one is left running."""

    name = "ray"

    def __init__(self, config: RayConfig | None = None) -> None:
        self.config = config or RayConfig()
        self._started = False

    def connect(self) -> None:
        """Join ``config.address`` or start a local cluster (once)."""
        ray = import_ray()
        if self.config.address:
            check_reachable(self.config.address, self.config.connect_timeout_s)
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if self.config.address:
            kwargs["address"] = self.config.address
        else:
            kwargs.update(num_cpus=self.config.num_cpus, include_dashboard=False,
                          resources=dict(self.config.local_resources))  # fmt: skip
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
            raise ExecutorError(
                f"cannot start or join Ray ({one_line(exc)}); check --ray-address"
            ) from None
        self._started = True

    def capacity(self, device: str) -> float:
        """Units of ``device`` the cluster's nodes carry in all."""
        self.connect()
        return float(import_ray().cluster_resources().get(device, 0.0))

    def require(self, devices: Sequence[str]) -> None:
        """Raise :class:`ExecutorError` unless some node carries each of ``devices``."""
        missing = sorted({d for d in devices if self.capacity(d) < 1})
        if missing:
            have = sorted(k for k in import_ray().cluster_resources() if _is_custom(k))
            label = ", ".join(f'"{m}": 1' for m in missing)
            raise ExecutorError(
                f"no node of the Ray cluster carries {', '.join(missing)} (device resources "
                f"there: {', '.join(have) or 'none'}); start the device's node with "
                f"ray start --resources='{{{label}}}'"
            )

    def require_placeable(self, resources: Sequence[Resources]) -> None:
        """Raise :class:`ExecutorError` unless one live node holds each step's CPUs and
        device at once (Ray would otherwise wait for such a node forever)."""
        self.require([r.device for r in resources if r.device])
        nodes = [n["Resources"] for n in import_ray().nodes() if n.get("Alive")]
        for r in sorted(set(resources), key=repr):
            fits = [n for n in nodes if (r.device is None or n.get(r.device, 0) >= 1)]
            if not any(n.get("CPU", 0) >= r.cpus for n in fits):
                most = max((n.get("CPU", 0) for n in fits), default=0)
                where = f"a node carrying {r.device}" if r.device else "a node"
                raise ExecutorError(
                    f"a step needs {r.cpus:g} CPUs on {where}, which has at most {most:g}; "
                    "start that node with more CPUs (ray start --num-cpus) or use fewer threads"
                )

    def run(self, jobs: Sequence[Job]) -> Iterator[JobOutcome]:
        self.connect()
        self.require_placeable([s.resources for j in jobs for s in j.steps])
        return self._results(self._submit(jobs))

    def _submit(self, jobs: Sequence[Job]) -> dict[Any, str]:
        ray = import_ray()
        task = ray.remote(run_step)
        shared: dict[int, Any] = {}

        def by_ref(value: Any) -> Any:
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            return shared.setdefault(id(value), ray.put(value))

        finals = {}
        for job in jobs:
            args = [by_ref(a) for a in job.args]
            previous = None
            for step in job.steps:
                device = step.resources.device
                previous = task.options(
                    num_cpus=step.resources.cpus,
                    resources={device: 1} if device else {},
                    max_retries=self.config.max_retries,
                    name=f"{job.key}:{step.name}",
                ).remote(step, job.key, previous, *args)
            finals[previous] = job.key
        return finals

    def _results(self, finals: dict[Any, str]) -> Iterator[JobOutcome]:
        ray = import_ray()
        pending = list(finals)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                ref = ready[0]
                try:
                    value, spans = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the job's code raised
                    yield JobOutcome(finals[ref], error=one_line(exc.cause or exc))
                except ray.exceptions.RayError as exc:  # died more often than retried
                    yield JobOutcome(finals[ref], error=one_line(exc))
                else:
                    yield JobOutcome(finals[ref], value, spans=spans)
        finally:
            for ref in pending:  # stopped early (Ctrl-C, a failed consumer)
                ray.cancel(ref)

    def close(self) -> None:
        if self._started:
            import_ray().shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
