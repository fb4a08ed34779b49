"""Measure beside the original in a process that trained nothing, as a deployment runs.

A process's history moves what it reads (docs/design/measurement.md and
docs/design/search.md on the process a check measures in). A budget is about the
deployed model, so the readings that decide it can come from a spawned worker that has
only loaded the original and the input.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch
from torch import nn

from ..profiler import BackendBase, TimingConfig
from ._calibrate import MODEL_TIMING
from ._checked import MEASURE_ROUNDS, measure_beside

# the worker's state: (original, example input, backend), set once by _start
_WORKER: dict = {}


def _start(backend_type: type, config, original: nn.Module, example: torch.Tensor,
           threads: int) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    _WORKER.update(original=original.eval(), example=example, backend=backend_type(config))


def _ready() -> bool:
    return bool(_WORKER)


def _measure(model: nn.Module, rounds: int, timing: TimingConfig,
             thresholds: tuple[float, ...]) -> tuple[float, float]:  # fmt: skip
    return measure_beside(_WORKER["original"], model.eval(), _WORKER["example"],
                          _WORKER["backend"], rounds, timing, thresholds)  # fmt: skip


class FreshMeasurer:
    """:func:`~ttmpd.pruning.measure_beside` against ``original`` in one spawned worker
    process that loads nothing else (started at construction, so its imports overlap the
    caller's work; kept for every call; closed by :meth:`close` or ``with``).

    ``measurer(model, thresholds=()) -> (original_ms, model_ms)``, the signature
    :func:`~ttmpd.pruning.checked_prune` takes. The backend is rebuilt in the worker as
    ``type(backend)(backend.config)``; torch there runs ``torch.get_num_threads()`` of the
    caller's threads. Models and the input are sent pickled (a copy: the caller's are never
    touched).
    """

    def __init__(
        self,
        original: nn.Module,
        example_input: torch.Tensor,
        backend: BackendBase,
        rounds: int = MEASURE_ROUNDS,
        timing: TimingConfig = MODEL_TIMING,
    ) -> None:
        self.rounds, self.timing = rounds, timing
        args = (type(backend), backend.config, original, example_input, torch.get_num_threads())
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=args,
        )
        self._pool.submit(_ready)  # start the worker now, not at the first measurement

    def __call__(self, model: nn.Module, thresholds: Sequence[float] = ()) -> tuple[float, float]:
        try:
            job = self._pool.submit(_measure, model, self.rounds, self.timing, tuple(thresholds))
            return job.result()
        except BrokenProcessPool as exc:
            raise RuntimeError(
                "the measuring process died (the backend could not be rebuilt there, or it "
                f"ran out of memory): {exc}"
            ) from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FreshMeasurer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
