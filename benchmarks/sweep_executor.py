"""The same Pareto sweep run locally and on Ray on this machine: wall time, parallelism,
same rows.

Sweep: the shipped ResNet-20 on MNIST-test under motion blur 5 (the first ``--images``
images: 128 proxy images, the rest held out), the ONNX Runtime table of
``benchmarks/luts`` (built on first use), budgets x methods plus the unpruned model.
The local executor runs the jobs one after another in this process; the Ray executor
starts a local cluster of ``--cpus`` CPUs whose node carries the table's device resource,
so searches run ``--cpus`` at a time and measurements one at a time. Torch runs one thread
per job either way (Ray's tasks get one CPU each), so both do the same work.

How it scales: the search and accuracy steps spread over every CPU of every node, the
measure steps queue on the device (one at a time per device node). With N nodes of C CPUs
the wall time is about ``start + max(compute_s / (N * C), measure_s / devices)`` where
``compute_s`` and ``measure_s`` are the summed step times the table reports; on this
2-core host N * C = 2 and Ray's start and worker imports are a large share of a small
sweep.

    python benchmarks/sweep_executor.py [--budgets 0.4,0.6] [--methods uniform,knapsack]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results

from ttmpd.base import reference_checkpoint_path
from ttmpd.data import make_stream
from ttmpd.executor import LocalExecutor, RayConfig, RayExecutor, peak_concurrency
from ttmpd.lut import profile_model
from ttmpd.profiler import BackendConfig, GridConfig, get_backend
from ttmpd.pruning import SearchConfig, pareto_sweep
from ttmpd.workflow import load_predictor_for, load_scenario, measure_on_table_backend

LUTS = Path(__file__).parent / "luts"
SAME = ["method", "budget", "plan_id", "predicted_ms", "accuracy"]


def _sweep(scenario, predictor, table, budgets, methods, executor, device):
    """One sweep on ``executor``: ``(frame, spans, wall_s)``."""
    example = scenario.example
    spans = []
    start = time.perf_counter()
    frame = pareto_sweep(
        scenario.checkpoint.model, example, predictor, scenario.images, scenario.evaluate,
        lambda m: measure_on_table_backend(table, m, example), budgets, methods,
        SearchConfig(budget=0.5, progress=False), progress=False, executor=executor,
        device=device, on_outcome=lambda o: spans.extend(o.spans),
    )  # fmt: skip
    return frame, spans, time.perf_counter() - start


def _row(name, frame, spans, wall_s, start_s=0.0):
    by_step = {k: [s for s in spans if s.step == k] for k in ("prune", "measure")}
    step_s = {k: sum(s.end_s - s.start_s for s in v) for k, v in by_step.items()}
    return {"executor": name, "jobs": len(frame), "start_s": start_s, "sweep_s": wall_s,
            "wall_s": start_s + wall_s, "compute_s": step_s["prune"],
            "measure_s": step_s["measure"], "compute_peak": peak_concurrency(by_step["prune"]),
            "measure_peak": peak_concurrency(by_step["measure"])}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.4,0.6")
    parser.add_argument("--methods", default="ttmpd,uniform")
    parser.add_argument("--images", type=int, default=1000, help="stream images (first N)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")]
    methods = args.methods.split(",")
    work = Path(tempfile.mkdtemp(prefix="sweep_executor-"))
    make_stream("mnist", "motion_blur", 5, 0, work / "stream.npz", limit=args.images)
    checkpoint = str(reference_checkpoint_path())
    scenario = load_scenario(checkpoint, str(work / "stream.npz"), 128)
    lut = LUTS / "resnet20_mnist-onnxruntime.parquet"
    profile_model(scenario.checkpoint.model, scenario.example,
                  get_backend("onnxruntime", BackendConfig(threads=1)), lut,
                  grid=GridConfig(channel_step=8), resume=True, progress=False)  # fmt: skip
    predictor, table = load_predictor_for(str(lut), None, scenario.checkpoint.model,
                                          scenario.example)  # fmt: skip
    device = f"device:{table.fingerprint.device_id()}"

    local, spans, wall_s = _sweep(scenario, predictor, table, budgets, methods,
                                  LocalExecutor(), device)  # fmt: skip
    rows = [_row("local", local, spans, wall_s)]
    print(rows[-1], file=sys.stderr)
    config = RayConfig(num_cpus=args.cpus, local_resources=((device, 1.0),))
    with RayExecutor(config) as executor:
        start = time.perf_counter()
        executor.connect()
        start_s = time.perf_counter() - start
        remote, spans, wall_s = _sweep(scenario, predictor, table, budgets, methods,
                                       executor, device)  # fmt: skip
    rows.append(_row(f"ray ({args.cpus} CPUs)", remote, spans, wall_s, start_s))
    frame = pd.DataFrame(rows)
    frame["speedup"] = frame["wall_s"].iloc[0] / frame["wall_s"]
    same = local[SAME].equals(remote[SAME])
    frame["same_rows"] = [True, same]
    write_results(RESULTS / "sweep_executor", frame, budgets=budgets, methods=methods,
                  images=args.images, rows_local=local.to_dict("records"),
                  rows_ray=remote.to_dict("records"))  # fmt: skip
    print(markdown_table(frame))
    print(f"\nRay / local wall time: {frame['wall_s'].iloc[1] / frame['wall_s'].iloc[0]:.2f} "
          f"(sweep alone {frame['sweep_s'].iloc[1] / frame['sweep_s'].iloc[0]:.2f}); same "
          f"plans, predictions and accuracies: {same}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
