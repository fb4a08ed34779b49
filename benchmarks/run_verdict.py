"""Does ``ttmpd run``'s final verdict read differently in the process that distilled?

``run.json``'s ``measure`` stage times the final student beside the original in the run's
own process, after pruning and distillation trained there. A deployment loads the model
into a process that trained nothing. Per run: one whole ``ttmpd`` run (``in-run``), then
the ``measure`` stage again ``--fresh`` times, each in a new process (the stage and the
report are dropped from ``run.json`` and the run resumed: every earlier stage is loaded
from disk). The demo (ONNX Runtime) and the same scenario on torch-cpu, runs alternating.

Reports each run's in-run ratio, the fresh processes' median, range and spread, the
in-run reading's offset from that median (%) and whether it falls inside the fresh range.

    python benchmarks/run_verdict.py [--runs 2] [--fresh 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import RESULTS, markdown_table, write_results

from ttmpd.base import reference_checkpoint_path


def _ttmpd(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "ttmpd", *argv, "--no-progress", "--json"],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def _ratio(out: Path) -> float:
    return json.loads((out / "run.json").read_text())["stages"]["measure"]["measured_ratio"]


def _drop_measure(out: Path) -> None:
    state = json.loads((out / "run.json").read_text())
    for stage in ("measure", "report"):
        state["stages"].pop(stage, None)
    (out / "run.json").write_text(json.dumps(state, indent=2))


def one_run(backend: str, out: Path, stream: Path | None, fresh: int) -> dict:
    """The in-run ratio and ``fresh`` re-measurements of one run in ``out``."""
    if backend == "onnxruntime":  # the demo itself
        argv = ["demo", "--out", str(out)]
    else:
        argv = ["run", "--model", str(reference_checkpoint_path()), "--data", str(stream),
                "--backend", backend, "--budget", "0.5", "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    _ttmpd(*argv)
    run_s = time.perf_counter() - start
    in_run = _ratio(out)
    again = []
    for _ in range(fresh):
        _drop_measure(out)
        _ttmpd(*argv, *(["--resume"] if argv[0] == "run" else []))
        again.append(_ratio(out))
    median = float(np.median(again))
    return {"backend": backend, "run_s": run_s, "in_run": in_run, "fresh_median": median,
            "fresh_min": min(again), "fresh_max": max(again),
            "fresh_spread_pct": 100 * (max(again) - min(again)) / median,
            "in_run_offset_pct": 100 * (in_run / median - 1),
            "inside_fresh_range": min(again) <= in_run <= max(again)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per backend")
    parser.add_argument("--fresh", type=int, default=4, help="fresh re-measurements per run")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ttmpd-verdict-") as tmp:
        for i in range(args.runs):
            for backend in ("onnxruntime", "torch-cpu"):
                out = Path(tmp) / f"{backend}{i}"
                stream = Path(tmp) / "onnxruntime0" / "stream.npz"  # the demo's own stream
                row = one_run(backend, out, stream, args.fresh)
                rows.append({"run": i, **row})
                print(f"{backend} run {i}: in-run {row['in_run']:.4f}, fresh median "
                      f"{row['fresh_median']:.4f}", file=sys.stderr)  # fmt: skip
    frame = pd.DataFrame(rows)
    meta = {"model": "resnet20_mnist", "budget": 0.5, "stream": "the demo's (motion blur 5)",
            "runs": args.runs, "fresh": args.fresh}  # fmt: skip
    write_results(RESULTS / "run_verdict", frame, **meta)
    print(markdown_table(frame, digits=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
