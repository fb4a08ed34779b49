"""Run a benchmark step in a fresh Python process.

A long benchmark process changes what it measures: in one process, eager PyTorch ran
ResNet-56 about 20% slower after the ResNet-18 and MobileNetV2 pairs, and far less
steadily (its noise floor, pass 2 within ±10% of pass 1, fell from 97.5% measured alone to
35%); after the fine-tunes of ``ttmpd_vs_baselines.py`` the kept prunes read a median 9%
slower than in a new process. The cause is the process's state, not the garbage collector
(disabling it changed nothing); docs/design/measurement.md.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def isolated(job, *args):
    """``job(*args)`` in a fresh, spawned Python process; its result returned.

    ``job`` must be importable by the child (a module-level function of the running script
    or of an importable module), and its arguments and result picklable.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(job, *args).result()
