"""Pruned results: does the measured latency land where the predictor said?

The issue 5 criterion: the results of ``ttmpd prune`` report predicted against measured
latency, and measured is within ±10% of predicted on the CPU backends.

Setup: the shipped ResNet-20 (MNIST), 128 unlabeled images of the MNIST test stream under
motion blur at severity 5 for the proxies. Per backend (1 thread): the LUT
``benchmarks/luts/resnet20_mnist-<backend>.parquet`` (channel step 8, 8 off-grid counts per
unit, built or extended on first use) and a predictor calibrated as ``ttmpd prune
--calibrate-variants 6`` does (the model and 6 random prunes, median of 3 interleaved
rounds). Then every method prunes to every budget (a budget below what a method can reach is
skipped and said so); nothing is measured inside a search.
At the end all results and the original are measured in 3 interleaved passes: the median
is the measured latency, pass 2 against pass 1 the noise floor.

Reported per result: predicted ms (calibrated), measured ms, measured / predicted − 1, and
the predicted and measured fractions of the original with their relative difference. The
fractions are free of host drift between calibration and measurement: both divide by the
original measured (or predicted) at the same time. Summary per backend: share within ±10%
and ±5%, median and worst absolute error, the share of fractions within ±10%, the
original's own error, and the same share for pass 2 against pass 1. Control: the 6
calibration prunes are measured again in the final passes; ``control_error_pct`` is their
median error against the calibrated prediction then, ``control_drift_pct`` their median
change since the calibration measured them. A result error that the control shares is a
change of the device between calibration and measurement, not a wrong prediction.

    python benchmarks/prune_latency.py [--backends torch-cpu,onnxruntime]
        [--methods ttmpd,knapsack,uniform] [--budgets 0.35,0.4,0.5,0.6,0.7]   # ~15 min
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results

from ttmpd.base import reference_checkpoint_path, to_model_input
from ttmpd.data import corrupt, load_mnist
from ttmpd.errors import InputError
from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.models import load_checkpoint
from ttmpd.profiler import BackendConfig, GridConfig, get_backend
from ttmpd.pruning import (
    SearchConfig,
    calibrate_predictor,
    calibration_round_to,
    calibration_variants,
    measure_models,
    prune,
)

LUTS = Path(__file__).parent / "luts"
GRID = GridConfig(channel_step=8, off_grid_per_unit=8)


def run_backend(backend_name: str, methods, budgets, calib, x, model) -> list[dict]:
    backend = get_backend(backend_name, BackendConfig(threads=1))
    lut = LUTS / f"resnet20_mnist-{backend_name}.parquet"
    table = profile_model(model, x, backend, lut, grid=GRID, resume=True, progress=False,
                          model_name="resnet20_mnist").table  # fmt: skip
    predictor = LatencyPredictor().fit(table)
    at_calibration = calibrate_predictor(predictor, model, x, backend, n_variants=6)
    aligned = calibration_round_to(predictor)
    controls = [(m, x) for m in calibration_variants(model, x, 6, 0, aligned)[1:]]  # the same 6
    rows, models = [], [(model, x)]
    for budget in budgets:
        for method in methods:
            search = SearchConfig(budget=budget, method=method, progress=False)
            try:
                result = prune(model, x, predictor, calib, search)
            except InputError as exc:  # a budget below what pruning can reach
                print(f"skip {backend_name} {method} {budget}: {exc}", file=sys.stderr)
                continue
            models.append((result.model.eval(), x))
            rows.append({"backend": backend_name, "method": method, "budget": budget,
                         "predicted_ms": result.predicted_latency_ms,
                         "predicted_original_ms": result.base_latency_ms,
                         "search_s": result.search_s})  # fmt: skip
            print(f"{backend_name} {method} {budget}: {result.predicted_latency_ms:.3f} ms "
                  f"predicted, {result.search_s:.1f} s", file=sys.stderr)  # fmt: skip
    both = np.array([measure_models(models + controls, backend, rounds=1) for _ in range(3)])
    passes, at_end = both[:, : len(models)], np.median(both[:, len(models) :], axis=0)
    measured = np.median(passes, axis=0)
    # control: the calibration prunes again, now; did they move since the calibration?
    control_pred = np.array([predictor.predict_model(m, x).total_ms for m, _ in controls])
    control_error_pct = float(np.median(100 * (at_end / control_pred - 1)))
    control_drift_pct = float(np.median(100 * (at_end / np.asarray(at_calibration[1:]) - 1)))
    for row, ms, first, second in zip(rows, measured[1:], passes[0, 1:], passes[1, 1:],
                                      strict=True):  # fmt: skip
        row["measured_ms"] = ms
        row["pass2_vs_pass1_pct"] = 100 * (second / first - 1)
        row["error_pct"] = 100 * (ms / row["predicted_ms"] - 1)
        row["measured_fraction"] = ms / measured[0]
        row["original_ms"] = measured[0]
        # drift-free: both fractions divide by the original of the same time
        row["predicted_fraction"] = row["predicted_ms"] / row["predicted_original_ms"]
        row["fraction_error_pct"] = 100 * (row["measured_fraction"] / row["predicted_fraction"] - 1)
        row["control_error_pct"] = control_error_pct
        row["control_drift_pct"] = control_drift_pct
    return rows


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    err = frame.assign(
        abs_err=frame["error_pct"].abs(),
        original_error_pct=100 * (frame["original_ms"] / frame["predicted_original_ms"] - 1),
    )
    return err.groupby("backend", as_index=False).agg(
        results=("abs_err", "size"),
        within10_pct=("abs_err", lambda e: 100 * float((e <= 10).mean())),
        within5_pct=("abs_err", lambda e: 100 * float((e <= 5).mean())),
        median_abs_error_pct=("abs_err", "median"),
        worst_error_pct=("error_pct", lambda e: float(e.iloc[np.argmax(np.abs(e))])),
        fraction_within10_pct=("fraction_error_pct", lambda e: 100 * float((e.abs() <= 10).mean())),
        original_error_pct=("original_error_pct", "first"),
        noise_within10_pct=("pass2_vs_pass1_pct", lambda e: 100 * float((e.abs() <= 10).mean())),
        noise_median_pct=("pass2_vs_pass1_pct", lambda e: float(e.abs().median())),
        control_error_pct=("control_error_pct", "first"),
        control_drift_pct=("control_drift_pct", "first"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch-cpu,onnxruntime")
    parser.add_argument("--methods", default="ttmpd,knapsack,uniform")
    parser.add_argument("--budgets", default="0.35,0.4,0.5,0.6,0.7")
    parser.add_argument("--severity", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "prune_latency")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(reference_checkpoint_path())
    model, norm = checkpoint.model.eval(), checkpoint.normalization
    test = load_mnist("test")
    images = corrupt(test.images, "motion_blur", args.severity, seed=0)
    pick = np.random.default_rng(0).choice(len(images), size=128, replace=False)
    calib = to_model_input(images[pick], norm)
    x = calib[:1].clone()
    budgets = [float(b) for b in args.budgets.split(",")]
    rows = []
    for backend_name in args.backends.split(","):
        if not get_backend(backend_name).is_available():
            print(f"skip {backend_name}: unavailable", file=sys.stderr)
            continue
        rows += run_backend(backend_name, args.methods.split(","), budgets, calib, x, model)
    frame = pd.DataFrame(rows)
    summary = summarize(frame)
    write_results(args.out, frame, severity=args.severity, calibration_variants=6, rounds=3)
    write_results(args.out.with_name(args.out.name + "_summary"), summary)
    print(markdown_table(frame[["backend", "method", "budget", "predicted_ms", "measured_ms",
                                "error_pct", "predicted_fraction", "measured_fraction",
                                "fraction_error_pct", "search_s"]]))  # fmt: skip
    print()
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
