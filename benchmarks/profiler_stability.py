"""Profiler stability: how repeatable are LUT entries, and what does a LUT cost to build?

For each backend and model: profile the model's pruning grid into a fresh LUT (pass 1),
then re-measure a random sample of >= 50 of its entries (pass 2) and report

* the median and p95 relative difference ``|pass2 - pass1| / pass1``,
* profiling throughput (entries per second of wall time, pass 1),
* overhead = pass-1 wall time / time spent inside timed samples (warm-up, ONNX export,
  session creation and Python are the difference),
* drift: the median of ``pass2 / pass1`` - 1 (a machine-wide slowdown between the passes,
  e.g. another job starting on this shared machine, shows here rather than as noise),
* the share of entries flagged unstable.

Usage::

    python benchmarks/profiler_stability.py                     # defaults below
    python benchmarks/profiler_stability.py --backends torch-cpu --sample 80

Prints a table and writes benchmarks/results/profiler_stability.{csv,json}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results

from ttmpd.lut import profile_model
from ttmpd.models import create_model
from ttmpd.profiler import BackendConfig, GridConfig, TimingConfig, get_backend

DEFAULT_MODELS = ("resnet20:1,3,32,32", "mobilenet_v2:1,3,224,224")


def run_one(backend_name: str, spec: str, sample: int, grid: GridConfig, seed: int) -> dict:
    name, shape_text = spec.split(":")
    shape = tuple(int(d) for d in shape_text.split(","))
    model = create_model(name, in_channels=shape[1]).eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    backend = get_backend(backend_name, BackendConfig(threads=1))
    timing = TimingConfig()
    with tempfile.TemporaryDirectory() as tmp:
        result = profile_model(
            model, x, backend, Path(tmp) / "lut.parquet", grid=grid, timing=timing,
            model_name=name, progress=sys.stderr.isatty(),
        )  # fmt: skip
    table = result.table
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(table), size=min(sample, len(table)), replace=False)
    configs = table.configs()
    start = time.perf_counter()
    first = table.frame["latency_ms"].to_numpy()[rows]
    second = np.array([backend.measure(configs[i], timing).median_ms for i in rows])
    rel = np.abs(second - first) / first
    return {
        "backend": backend_name,
        "model": name,
        "input": shape_text,
        "entries": len(table),
        "resampled": len(rows),
        "rel_diff_median_pct": 100 * float(np.median(rel)),
        "rel_diff_p95_pct": 100 * float(np.percentile(rel, 95)),
        "drift_pct": 100 * float(np.median(second / first) - 1),
        "unstable_pct": 100 * float(table.frame["unstable"].mean()),
        "entries_per_s": result.measured / result.wall_s,
        "overhead": result.overhead,
        "profile_wall_s": result.wall_s,
        "pass2_wall_s": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch-cpu", "onnxruntime"])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--sample", type=int, default=60, help="entries re-measured (>= 50)")
    parser.add_argument("--channel-step", type=int, default=8)
    parser.add_argument("--max-variants-per-unit", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "profiler_stability")
    args = parser.parse_args(argv)
    grid = GridConfig(
        channel_step=args.channel_step, max_variants_per_unit=args.max_variants_per_unit
    )
    records = []
    for backend in args.backends:
        b = get_backend(backend)
        if not b.is_available():
            print(f"skip {backend}: {b.unavailable_reason()}", file=sys.stderr)
            continue
        for spec in args.models:
            records.append(run_one(backend, spec, args.sample, grid, args.seed))
            print(f"done {backend} {spec}", file=sys.stderr)
    frame = pd.DataFrame(records)
    write_results(
        args.out,
        frame,
        threads=1,
        grid={"channel_step": args.channel_step, "max_variants": args.max_variants_per_unit},
    )
    shown = frame[
        ["backend", "model", "entries", "resampled", "rel_diff_median_pct", "rel_diff_p95_pct",
         "drift_pct", "unstable_pct", "entries_per_s", "overhead"]
    ]  # fmt: skip
    print(markdown_table(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
