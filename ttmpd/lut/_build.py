"""Build a latency table by profiling a model's grid on a backend, resumably.

Configurations are measured in chunks of :data:`CHUNK`, each chunk ``rounds`` times over
(round r measures every configuration of the chunk before round r+1 starts) and each row
keeps its median round, so a burst of load lands on one round of many rows rather than on
every round of one (docs/design/measurement.md).
Backends that run units build each configuration's runner once per chunk and keep it for
all rounds; a configuration whose first rounds already pin its median round skips the
rest, and the rounds that agree with the median round are pooled into the row
(:meth:`~ttmpd.profiler.BackendBase.measure_rounds`, :mod:`ttmpd.profiler._timing`).

Before measuring, ``on_plan`` receives a :class:`ProfilePlan` (the planned count); the
first chunk is a *pilot* of configurations spread over the whole plan, after which
``on_plan`` receives the plan again with an ETA extrapolated from it.

Each finished chunk is appended to a journal (``<out>.journal``, JSON lines, flushed and
fsynced) before anything else happens, so a run stopped by Ctrl-C or ``kill`` loses at most
the chunk being measured (the row being measured when ``rounds=1``). ``resume=True`` reads
the existing table and the journal, skips every configuration already there, and measures
only the rest. When the grid is done the table is written atomically to ``out`` and the
journal is removed.

Extending a saved table re-measures 16 of its rows before and after the new ones
(:mod:`ttmpd.lut._drift`; they are not written again). If the device's timing drifted since
and both checks agree, the new rows are mapped onto the table's time base. Rows that an
interrupted extension journaled are kept as measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._io import ensure_writable_dir, read_json_lines
from ..errors import LutError, ProbeError, TtmpdError
from ..profiler import (
    BackendBase,
    DeviceRules,
    GridConfig,
    TimingConfig,
    UncoveredOp,
    UnitConfig,
    extract_units,
    grid_configs,
    split_fusion,
)
from ..profiler._timing import combine_rounds
from ._drift import DriftMap, anchor_configs, fit_drift, remeasure
from ._schema import LutMeta, make_row
from ._table import LatencyTable, table_format

logger = logging.getLogger(__name__)
#: Configurations measured together in interleaved rounds (rounds > 1).
CHUNK = 32
#: Configurations in the pilot chunk, spread over the whole plan (the ETA's sample).
PILOT = 2 * CHUNK


@dataclass(frozen=True)
class ProfilePlan:
    """What a profiling run is about to measure.

    ``planned``: configurations to measure, the first ``pilot`` of them spread over the
    rest; ``reused``: already in the table; ``units``: the model's latency units;
    ``grid``: the grid in use. ``rate`` (configurations per second) and ``eta_s`` (seconds
    left for the rest) are ``None`` before the pilot and extrapolated from it after.
    """

    planned: int
    reused: int
    units: int
    grid: GridConfig
    rounds: int
    pilot: int
    eta_s: float | None = None
    rate: float | None = None


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` of a grid: configurations ``index, index + count, ...``
    in grid order, so shards of one grid are disjoint and together cover it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise LutError(f"shard index must be in [0, {self.count}), got {self.index}")

    def pick(self, configs: list[UnitConfig]) -> list[UnitConfig]:
        return configs[self.index :: self.count]


class ProfileInterrupted(TtmpdError):
    """Profiling was interrupted; measured rows are safe in the journal."""

    exit_code = 130


@dataclass(frozen=True)
class ProfileResult:
    """What a profiling run did: the table, counts, uncovered ops and times (s).

    ``timed_s`` is the time the measured configurations spent executing inside timed
    samples (``Σ samples · number · median``).
    """

    table: LatencyTable
    path: Path
    measured: int
    reused: int
    uncovered: tuple[UncoveredOp, ...]
    wall_s: float
    measure_wall_s: float
    timed_s: float
    drift: DriftMap | None = None

    @property
    def overhead(self) -> float:
        """Wall time / time spent inside timed samples (warm-up, export, Python excluded)."""
        return self.wall_s / self.timed_s if self.timed_s > 0 else float("nan")


def journal_path(out: str | os.PathLike) -> Path:
    return Path(f"{out}.journal")


def _read_journal(path: Path) -> tuple[dict | None, list[dict], int]:
    """Header metadata, rows, and the byte length of the complete lines of a journal.

    A last line cut short by a kill mid-write is ignored (and its offset excluded, so the
    caller can truncate it away before appending).
    """
    records, complete = read_json_lines(path, LutError)
    header = records[0].get("meta") if records else None
    rows = records[1:]
    return header, rows, complete


def _check_same_device(meta: LutMeta, current: LutMeta, what: str) -> None:
    diffs = meta.fingerprint.differences(current.fingerprint)
    if diffs:
        raise LutError(
            f"{what} was measured on another device/setting: {'; '.join(diffs)}; "
            "use the same backend settings or another output path"
        )


def _with_attention_fusion(table: LatencyTable, fusion: str) -> LatencyTable:
    """``table`` with the backend's current ``fusion`` when only its attention part differs:
    a table from before attention was probed names the conv fusion alone."""
    if table.meta.fusion == fusion or split_fusion(table.meta.fusion)[0] != split_fusion(fusion)[0]:
        return table
    return LatencyTable(table.frame, dataclasses.replace(table.meta, fusion=fusion))


def _start_table(out: Path, journal: Path, current: LutMeta, resume: bool) -> LatencyTable:
    """The table to extend: existing output and journal rows when resuming."""
    if not resume:
        if journal.exists():
            raise LutError(
                f"an interrupted run left {journal}; pass --resume to continue it or delete it"
            )
        if out.exists():
            raise LutError(f"{out} exists; pass --resume to extend it or choose another path")
    table = LatencyTable.empty(
        current.fingerprint,
        timing=current.timing,
        grid=current.grid,
        models=(),
        fusion=current.fusion,
        rules=current.rules,
    )
    if resume and out.exists():
        existing = LatencyTable.load(out)
        _check_same_device(existing.meta, current, str(out))
        table = _with_attention_fusion(existing, current.fusion)
    if resume and journal.exists():
        header, rows, complete = _read_journal(journal)
        if header is None:
            journal.unlink()
        else:
            os.truncate(journal, complete)  # drop a half-written last line
            _check_same_device(LutMeta.from_dict(header), current, f"the partial run {journal}")
            table = table.with_rows(rows, models=header.get("models", ()))
    if not table.meta.rules:  # a table from before rules were probed: take this probe's
        table = LatencyTable(table.frame, dataclasses.replace(table.meta, rules=current.rules))
    else:  # a table from before a later probe (same device): add this probe's finding
        added = {key: current.rules[key] for key in LATER_RULES
                 if not table.meta.rules.get(key) and current.rules.get(key)}  # fmt: skip
        if added:
            rules = {**table.meta.rules, **added}
            table = LatencyTable(table.frame, dataclasses.replace(table.meta, rules=rules))
    return table


#: Device rules probed only since some date (weight streaming 2026-12-02, isolation costs
#: 2026-12-03): a resumed table from before takes them from this run's probe.
LATER_RULES = ("streaming", "isolation")


def probe_device_rules(backend: BackendBase) -> DeviceRules:
    """``backend.probe_rules()``, a failure turned into one :class:`ProbeError` line."""
    try:
        return backend.probe_rules()
    except KeyboardInterrupt:
        raise ProfileInterrupted(
            "interrupted while probing the device; nothing was written"
        ) from None
    except TtmpdError:
        raise
    except Exception as exc:  # a probe runs the backend's own stack: report any failure
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ProbeError(
            f"the {backend.name} device probe failed ({type(exc).__name__}: {first}); the "
            "backend cannot be profiled on this machine as configured"
        ) from exc


def profile_model(
    model: nn.Module,
    example_input: torch.Tensor,
    backend: BackendBase,
    out: str | os.PathLike,
    *,
    grid: GridConfig | None = None,
    timing: TimingConfig | None = None,
    resume: bool = False,
    model_name: str = "",
    progress: bool = True,
    rounds: int = 3,
    on_plan: Callable[[ProfilePlan], None] | None = None,
    shard: Shard | None = None,
) -> ProfileResult:
    """Measure every grid configuration of ``model``'s units on ``backend`` into ``out``.

    ``example_input`` has shape ``(N, C, H, W)``. Each row is the median round of up to
    ``rounds`` interleaved measurements (module docstring). ``on_plan`` is called with the plan
    before measuring and again with its ETA after the pilot chunk. ``shard`` restricts the
    grid to one part of it (fleet profiling, :mod:`ttmpd.lut._fleet`). Returns the complete
    table, already saved. Raises :class:`ProfileInterrupted` on Ctrl-C (rows measured so
    far are kept).
    """
    if rounds < 1:
        raise LutError(f"rounds must be >= 1, got {rounds}")
    start = time.perf_counter()
    grid = grid or GridConfig()
    timing = timing or TimingConfig()
    out = Path(out)
    table_format(out)
    ensure_writable_dir(out)
    backend.require_available()
    extraction = extract_units(model, example_input, backend.fusion)
    for op in extraction.uncovered:
        logger.warning("no latency unit for %s in %s %s", op.aten, op.name or "<model>", op.shapes)
    rules = probe_device_rules(backend)
    logger.info("device rules (%.2f s): %s", rules.probe_seconds, rules.describe())
    current = LutMeta(
        fingerprint=backend.fingerprint(),
        timing=dataclasses.asdict(timing),
        grid=dataclasses.asdict(grid),
        fusion=backend.fusion,
        rules=rules.to_dict(),
    )
    journal = journal_path(out)
    table = _start_table(out, journal, current, resume)
    configs = grid_configs(extraction.units, grid, rules)
    if shard is not None:
        configs = shard.pick(configs)
    todo = _pilot_first([c for c in configs if c.key not in table], PILOT)
    plan = ProfilePlan(
        planned=len(todo),
        reused=len(configs) - len(todo),
        units=len(extraction.units),
        grid=grid,
        rounds=rounds,
        pilot=min(PILOT, len(todo)),
    )
    if on_plan is not None:
        on_plan(plan)
    models = (model_name,) if model_name else ()
    extending = resume and out.exists()  # a saved table, not only an interrupted journal
    anchors = anchor_configs(table) if todo and extending else []
    anchors = anchors if len(anchors) >= 3 else []
    try:
        before = remeasure(anchors, lambda c: backend.measure(c, timing).median_ms, rounds)
    except KeyboardInterrupt:
        raise ProfileInterrupted(
            "interrupted while re-measuring rows of the table for the drift check; nothing "
            "was written; rerun with --resume"
        ) from None

    new_journal = not journal.exists()
    with open(journal, "a") as fh:
        if new_journal:
            header = {"journal": 1, "meta": {**current.to_dict(), "models": list(models)}}
            fh.write(json.dumps(header) + "\n")
        sweep = _Sweep(backend, timing, rounds, fh, plan, on_plan)
        bar = tqdm(
            total=len(todo),
            desc=f"profile {backend.name}",
            unit="cfg",
            disable=not progress,
            leave=False,
        )
        try:
            for batch in _chunks(todo, CHUNK if rounds > 1 else 1, plan.pilot):
                bar.set_postfix_str(batch[0].op, refresh=False)
                sweep.measure(batch)
                bar.update(len(batch))
            after = remeasure(anchors, lambda c: backend.measure(c, timing).median_ms, rounds)
        except KeyboardInterrupt:
            raise ProfileInterrupted(
                f"interrupted after {sweep.measured} of {len(todo)} configurations; measured "
                f"rows are kept in {journal}; rerun with --resume to continue"
            ) from None
        finally:
            bar.close()
    _, rows, _ = _read_journal(journal)
    order = {c.key: i for i, c in enumerate(configs)}  # grid order, whatever ran first
    rows.sort(key=lambda row: order.get(row["key"], len(order)))
    drift = None
    if anchors:
        stored = np.array([table.lookup(c) for c in anchors], dtype=float)
        drift = fit_drift(stored, before, after)
        rows = _rebase_rows(rows, drift, {c.key for c in todo})
    table = table.with_rows(rows, models=models)
    table.save(out)
    with contextlib.suppress(FileNotFoundError):
        journal.unlink()
    return ProfileResult(
        table=table,
        path=out,
        measured=sweep.measured,
        reused=plan.reused,
        uncovered=extraction.uncovered,
        wall_s=time.perf_counter() - start,
        measure_wall_s=sweep.measure_wall_s,
        timed_s=sweep.timed_ms / 1e3,
        drift=drift,
    )


class _Sweep:
    """Measures chunks into the journal and keeps the counts; reports the pilot's ETA."""

    def __init__(
        self,
        backend: BackendBase,
        timing: TimingConfig,
        rounds: int,
        fh: IO[str],
        plan: ProfilePlan,
        on_plan: Callable[[ProfilePlan], None] | None,
    ) -> None:
        self.backend, self.timing, self.rounds, self.fh = backend, timing, rounds, fh
        self.plan, self.on_plan = plan, on_plan
        self.measured, self.measure_wall_s, self.timed_ms = 0, 0.0, 0.0
        self.started = time.perf_counter()

    def measure(self, batch: list[UnitConfig]) -> None:
        per_config = self.backend.measure_rounds(batch, self.timing, self.rounds)
        for config, timings in zip(batch, per_config, strict=True):
            result = combine_rounds(timings, self.timing)
            self.fh.write(json.dumps(make_row(config, result)) + "\n")
            self.timed_ms += sum(t.samples * t.number * t.median_ms for t in timings)
            self.measure_wall_s += result.wall_s
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.measured += len(batch)
        if self.measured == self.plan.pilot and self.on_plan is not None:
            rate = self.measured / max(time.perf_counter() - self.started, 1e-9)
            eta = (self.plan.planned - self.measured) / rate
            self.on_plan(dataclasses.replace(self.plan, eta_s=eta, rate=rate))


def _pilot_first(todo: list[UnitConfig], n: int) -> list[UnitConfig]:
    """``todo`` with ``n`` configurations evenly spread over it moved to the front."""
    if len(todo) <= n:
        return todo
    picks = sorted({round(i * (len(todo) - 1) / (n - 1)) for i in range(n)})
    chosen = set(picks)
    return [todo[i] for i in picks] + [c for i, c in enumerate(todo) if i not in chosen]


def _chunks(todo: list[UnitConfig], size: int, pilot: int):
    """The pilot (the first ``pilot`` configurations, in chunks of ``size``), then the
    rest in chunks of ``size``."""
    for lo, hi in ((0, pilot), (pilot, len(todo))):
        for at in range(lo, hi, size):
            yield todo[at : min(at + size, hi)]


def _rebase_rows(rows: list[dict], drift: DriftMap, keys: set[str]) -> list[dict]:
    """Rows with the given keys mapped onto the table's time base if the drift was steady;
    warns whenever the device drifted."""
    if not drift.drifted:
        return rows
    ratios = f"{drift.before_ratio:.2f}x before and {drift.after_ratio:.2f}x after"
    if not drift.steady:
        logger.warning(
            "the device's speed changed during profiling: %d re-measured rows of the table ran "
            "%s the new rows; new rows are kept as measured. Re-profile into a new file if "
            "the table should be on one time base.", drift.anchors, ratios,
        )  # fmt: skip
        return rows
    logger.warning(
        "this device now runs %d re-measured rows of the table %s the new rows; the new "
        "rows are mapped onto the table's time base (stored = %.3f * now %+.4f ms). "
        "Re-profile into a new file for fresh timings.",
        drift.anchors, ratios, drift.slope, drift.offset_ms,
    )  # fmt: skip
    columns = ("latency_ms", "p10_ms", "p90_ms")
    return [
        row | {c: drift.apply(row[c]) for c in columns} if row["key"] in keys else row
        for row in rows
    ]
