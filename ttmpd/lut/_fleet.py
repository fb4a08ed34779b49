"""Fleet profiling: one model's grid split across the nodes that carry a device resource.

A device type is named by a custom cluster resource (``ray start --resources=
'{"rpi4": 1}'`` on each Raspberry Pi 4, say). The grid is cut into ``workers`` disjoint
:class:`~ttmpd.lut._build.Shard` s; each shard is one job that holds one unit of the
resource, so a node measures one shard at a time. A shard is an ordinary
:func:`~ttmpd.lut.profile_model` run on its node into ``<out>.shards/<device>-<i>-of-<n>``
(journaled, resumable, with its own drift check when it extends an earlier shard table),
at the same absolute path on every node. The driver merges the shards of each device type
into one table with :meth:`LatencyTable.merge` and refuses shards whose fingerprints
differ: two nodes carrying one resource must be the same device and settings.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, LutError
from ..executor import Executor, Job, Resources, Step, run_jobs
from ..profiler import BackendConfig, GridConfig, TimingConfig, get_backend
from ._build import Shard, profile_model
from ._table import LatencyTable, table_format


@dataclass(frozen=True)
class FleetRequest:
    """What to profile on which devices.

    ``devices``: custom resource names, one per device type. ``workers``: shards per
    device type (None: one per unit of the resource in the cluster). ``backend``,
    ``backend_config``, ``grid``, ``timing``, ``rounds`` and ``model_name`` are passed to
    :func:`~ttmpd.lut.profile_model` on each node.
    """

    backend: str
    devices: tuple[str, ...]
    backend_config: BackendConfig = field(default_factory=BackendConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    rounds: int = 3
    model_name: str = ""
    workers: int | None = None

    def __post_init__(self) -> None:
        if not self.devices:
            raise InputError("fleet profiling needs at least one device resource")
        if len(set(self.devices)) != len(self.devices):
            raise InputError(f"device resources are listed twice: {', '.join(self.devices)}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class ShardTable:
    """A shard's table, as its node returned it, with how many rows it measured now."""

    device: str
    shard: Shard
    table: LatencyTable
    measured: int
    host: str


@dataclass(frozen=True)
class FleetResult:
    """Per device resource: the merged table's path and rows, the rows measured now, and
    the shards; ``wall_s`` for the whole run (s)."""

    paths: dict[str, Path]
    rows: dict[str, int]
    measured: dict[str, int]
    shards: dict[str, tuple[ShardTable, ...]]
    wall_s: float


def fleet_outputs(out: str | Path, devices: Sequence[str]) -> dict[str, Path]:
    """``out`` for one device type; ``<stem>.<device>.<suffix>`` each for several."""
    out = Path(out)
    table_format(out)
    if len(devices) == 1:
        return {devices[0]: out}
    return {d: out.with_name(f"{out.stem}.{_safe(d)}{out.suffix}") for d in devices}


def shard_path(out: Path, device: str, shard: Shard) -> Path:
    """Where a shard's table lives on its node (absolute: the same on every node)."""
    folder = out.resolve().parent / f"{out.name}.shards"
    return folder / f"{_safe(device)}-{shard.index}-of-{shard.count}{out.suffix}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def profile_shard(
    model: nn.Module,
    example_input: torch.Tensor,
    request: FleetRequest,
    device: str,
    shard: Shard,
    path: Path,
) -> ShardTable:
    """Profile one shard on this node (resuming its journal or table if there is one)."""
    backend = get_backend(request.backend, request.backend_config)
    result = profile_model(
        model, example_input, backend, path, grid=request.grid, timing=request.timing,
        resume=True, model_name=request.model_name, progress=False, rounds=request.rounds,
        shard=shard,
    )  # fmt: skip
    return ShardTable(device, shard, result.table, result.measured, socket.gethostname())


def merge_shards(shards: Sequence[ShardTable]) -> LatencyTable:
    """One table from the shards of one device type; :class:`LutError` if two shards were
    measured on different devices or settings (no rows are merged then)."""
    first = shards[0]
    for other in shards[1:]:
        diffs = first.table.fingerprint.differences(other.table.fingerprint)
        if diffs:
            raise LutError(
                f"shards of {first.device} were measured on different devices: shard "
                f"{first.shard.index} on {first.host} and shard {other.shard.index} on "
                f"{other.host} differ in {'; '.join(diffs)}; give each device type its own "
                "resource name"
            )
    merged = first.table
    for other in shards[1:]:
        merged = merged.merge(other.table)
    return merged


def profile_fleet(
    model: nn.Module,
    example_input: torch.Tensor,
    request: FleetRequest,
    out: str | Path,
    executor: Executor,
    resume: bool = False,
) -> FleetResult:
    """Profile ``model`` on every device type of ``request``, its grid split across the
    workers of each type; one merged table per type (:func:`fleet_outputs`), written
    atomically. ``resume``: extend existing tables (otherwise an existing output is an
    error, before anything runs)."""
    start = time.perf_counter()
    outs = fleet_outputs(out, request.devices)
    for path in outs.values():
        if path.exists() and not resume:
            raise LutError(f"{path} exists; pass --resume to extend it or choose another path")
    counts = {d: request.workers or max(1, int(executor.capacity(d))) for d in request.devices}
    step = Step(profile_shard, Resources(cpus=request.backend_config.threads), "profile")
    jobs = []
    for device, n in counts.items():
        for i in range(n):
            shard = Shard(i, n)
            path = shard_path(outs[device], device, shard)
            args = (model, example_input, request, device, shard, path)
            jobs.append(Job(f"{device}#{i}", (step,), args))
    values = run_jobs(executor, jobs).values
    paths, rows, measured, shards = {}, {}, {}, {}
    for device, path in outs.items():
        parts = tuple(values[f"{device}#{i}"] for i in range(counts[device]))
        table = merge_shards(parts)
        if resume and path.exists():
            table = LatencyTable.load(path).merge(table)
        paths[device] = table.save(path)
        rows[device], shards[device] = len(table), parts
        measured[device] = sum(p.measured for p in parts)
    return FleetResult(paths, rows, measured, shards, time.perf_counter() - start)
