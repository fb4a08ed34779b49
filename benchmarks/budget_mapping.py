"""Budget mapping: which original should a latency budget be a fraction of, for the search?

A budget is a fraction of the *measured* original latency. The search prices candidates with
the calibrated predictor, so the budget must be put on the predictor's scale. Two mappings:

=========== ============================================================================
mapping     search budget (fraction of the *predicted* original)
=========== ============================================================================
measured    ``budget · measured_original / predicted_original`` (the calibration's
            residual on the unpruned model moves every search target)
predicted   ``budget``: the predicted ratio of prune to original (a residual the prunes
            share with the original cancels)
=========== ============================================================================

Per backend: the LUT of ``ttmpd_vs_baselines.py`` (channel step 8, 1 thread), then
``--calibrations`` fresh calibrations (the model and 6 random prunes, median of 3
interleaved rounds; calibration seeds 0, 1, ...). For each calibration, corruption of the
tuning set (``--corruptions``, seed 0) and budget, each ``--methods`` prunes once per mapping.
All the prunes of a backend and the original are then measured together in 3 interleaved
passes, the original twice (``noise_floor_pct``: the copy against it); ``ratio`` is the
median prune over the median original of the same passes and
``over_pct = 100 · (ratio / budget − 1)``. No fine-tuning: it changes weights, not
latency.

Tuning set only (motion blur and impulse noise, seed 0; the held-out set of
``ttmpd_vs_baselines.py`` is never pruned here): the mapping is chosen from this table.

    python benchmarks/budget_mapping.py [--backends torch-cpu,onnxruntime]
        [--budgets 0.3,0.4,0.5,0.7] [--methods ttmpd,tp-magnitude] [--calibrations 2]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np
import pandas as pd
from _report import RESULTS, markdown_table, write_results
from ttmpd_vs_baselines import SETS, TOLERANCE, protocol_setup, split

from ttmpd.base import to_model_input
from ttmpd.data import corrupt
from ttmpd.errors import InputError
from ttmpd.lut import LatencyPredictor
from ttmpd.pipeline import search_budget
from ttmpd.pruning import SearchConfig, calibrate_predictor, measure_models, prune

MAPPINGS = ("measured", "predicted")


def fraction_for(mapping: str, budget: float, measured_ms: float, predicted_ms: float) -> float:
    """The search budget (fraction of the predicted original) of ``mapping``."""
    if mapping == "predicted":
        return budget
    return search_budget(budget, measured_ms, predicted_ms)


def run_backend(args, backend_name: str) -> list[dict]:
    model, norm, test, backend, x, _, table = protocol_setup("resnet20_mnist", backend_name)
    corruptions, seeds = SETS["tuning"]
    rows, students = [], []
    for calibration in range(args.calibrations):
        predictor = LatencyPredictor().fit(table)
        measured_ms = calibrate_predictor(predictor, model, x, backend, 6, seed=calibration)[0]
        predicted_ms = predictor.predict_model(model, x).total_ms
        print(f"{backend_name} calibration {calibration}: original measured {measured_ms:.4f} "
              f"ms, predicted {predicted_ms:.4f} ms", file=sys.stderr)  # fmt: skip
        for corruption in corruptions:
            images = corrupt(test.images, corruption, 5, seed=seeds[0])
            tune, _, _ = split(images, test.labels, 512, seeds[0])
            calib = to_model_input(tune[:128], norm)
            for budget in args.budgets:
                for method in args.methods:
                    for mapping in MAPPINGS:
                        row = {"backend": backend_name, "calibration": calibration,
                               "corruption": corruption, "budget": budget, "method": method,
                               "mapping": mapping, "calibration_original_ms": measured_ms,
                               "predicted_original_ms": predicted_ms}  # fmt: skip
                        try:
                            fraction = fraction_for(mapping, budget, measured_ms, predicted_ms)
                            config = SearchConfig(budget=fraction, method=method, seed=0,
                                                  progress=False)  # fmt: skip
                            start = time.perf_counter()
                            result = prune(model, x, predictor, calib, config)
                        except InputError as exc:
                            print(f"{row}: {exc}", file=sys.stderr)
                            continue
                        seconds = time.perf_counter() - start
                        ratio = result.predicted_latency_ms / predicted_ms
                        row.update(search_fraction=fraction, prune_s=seconds,
                                   predicted_ratio=ratio)  # fmt: skip
                        rows.append(row)
                        students.append(result.model.eval())
    # the original twice: the second copy's ratio is the noise floor of these passes
    pairs = [(model, x), (copy.deepcopy(model), x)] + [(s, x) for s in students]
    ms = measure_models(pairs, backend, rounds=3, progress=True)
    floor = 100 * (ms[1] / ms[0] - 1)
    print(f"{backend_name}: original against itself {floor:+.2f}%", file=sys.stderr)
    for row, measured in zip(rows, ms[2:], strict=True):
        row["noise_floor_pct"] = floor
        row.update(original_ms=ms[0], measured_ms=measured, ratio=measured / ms[0])
        row["over_pct"] = 100 * (row["ratio"] / row["budget"] - 1)
        row["priced_low_pct"] = 100 * (row["ratio"] / row["predicted_ratio"] - 1)
        row["within_budget"] = bool(row["ratio"] <= row["budget"] * TOLERANCE)
    return rows


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per backend and mapping: how far the prunes land from their budgets."""
    out = []
    for (backend, mapping), group in frame.groupby(["backend", "mapping"], sort=False):
        over = group["over_pct"]
        out.append({"backend": backend, "mapping": mapping, "prunes": len(group),
                    "within_budget": f"{int(group['within_budget'].sum())}/{len(group)}",
                    "median_over_pct": float(over.median()),
                    "median_abs_over_pct": float(over.abs().median()),
                    "worst_over_pct": float(over.max()),
                    "median_priced_low_pct": float(group["priced_low_pct"].median())})  # fmt: skip
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch-cpu,onnxruntime")
    parser.add_argument("--budgets", default="0.3,0.4,0.5,0.7")
    parser.add_argument("--methods", default="ttmpd,tp-magnitude")
    parser.add_argument("--calibrations", type=int, default=2)
    parser.add_argument("--name", default="budget_mapping_tuning")
    args = parser.parse_args(argv)
    args.budgets = [float(b) for b in args.budgets.split(",")]
    args.methods = args.methods.split(",")
    rows = [r for b in args.backends.split(",") for r in run_backend(args, b)]
    frame = pd.DataFrame(rows)
    summary = summarise(frame)
    print(markdown_table(summary))
    write_results(RESULTS / args.name, frame, summary=summary.to_dict("records"),
                  set="tuning", noise_floor_note="3 interleaved passes, median")  # fmt: skip
    worst = frame.groupby("mapping")["over_pct"].apply(lambda s: float(np.max(s)))
    print(worst.to_string(), file=sys.stderr)


if __name__ == "__main__":
    main()
