"""``ttmpd predict``: a model's latency from a LUT or a saved predictor."""

from __future__ import annotations

import argparse
import sys
import warnings

from ._common import add_model_args, model_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict a model's latency from a LUT (optionally measure it beside)",
        description="Predict end-to-end latency with a per-unit breakdown from a device LUT.",
    )
    add_model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lut", help="latency table (.parquet/.csv); fits a predictor on the fly")
    src.add_argument("--predictor", help="a predictor saved by ttmpd lut fit (.json)")
    p.add_argument(
        "--calibrate-variants",
        type=int,
        default=6,
        help="with --lut: calibrate on the spot, measuring the model and N random prunes on "
        "the table's backend (default 6)",
    )
    p.add_argument(
        "--uncalibrated",
        action="store_true",
        help="with --lut: report the plain unit sum, uncalibrated (no measuring)",
    )
    p.add_argument("--breakdown", action="store_true", help="print the per-unit table")
    p.add_argument("--measure", action="store_true", help="also measure on the LUT's backend")
    p.add_argument("--plot", help="write a per-layer latency bar chart (PNG)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..lut import (
        LatencyPredictor,
        LatencyTable,
        backend_for_table,
        load_predictor,
        plot_layer_latency,
    )

    if args.predictor and (args.uncalibrated or args.calibrate_variants != 6):
        raise InputError("--uncalibrated/--calibrate-variants go with --lut, not --predictor")
    if args.calibrate_variants < 1:
        raise InputError(f"--calibrate-variants must be >= 1, got {args.calibrate_variants}")
    if args.plot:
        from .._io import check_writable

        check_writable(args.plot)  # before calibrating, which measures for a while
    name, model, example = model_from_args(args)
    if args.predictor:
        predictor, table = load_predictor(args.predictor)
        calibration = f"saved, {predictor.describe_calibration()}"
    else:
        table = LatencyTable.load(args.lut)
        predictor = LatencyPredictor().fit(table)
        calibration = predictor.describe_calibration()
        if not args.uncalibrated:
            from ..pruning import calibrate_predictor

            # refuses with one line if unavailable here or measured on another device
            backend = backend_for_table(table, same_device="calibrating (--uncalibrated skips it)")
            print(
                f"calibrating: measuring {name} and {args.calibrate_variants} random prunes on "
                f"{table.meta.backend} (3 interleaved rounds; --uncalibrated skips this)",
                file=sys.stderr,
            )
            calibrate_predictor(predictor, model, example, backend, args.calibrate_variants,
                                progress=True)  # fmt: skip
            calibration = predictor.describe_calibration()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prediction = predictor.predict_model(model, example)
    measured = None
    if args.measure:
        measured = backend_for_table(table).measure_model(model, example).median_ms
    if args.plot:
        plot_layer_latency(prediction.breakdown, args.plot, title=f"{name} on {table.meta.backend}")
    hits = int(prediction.breakdown["measured"].sum())
    summary = {
        "model": name,
        "backend": table.meta.backend,
        "predicted_ms": prediction.total_ms,
        "calibration": calibration,
        "unit_sum_ms": prediction.unit_sum_ms,
        "units": len(prediction.breakdown),
        "lut_hits": hits,
        "uncovered": [f"{u.aten} ({u.name or '<model>'})" for u in prediction.uncovered],
        "measured_ms": measured,
        "error_pct": None if measured is None else 100 * (prediction.total_ms / measured - 1),
    }
    if args.json:
        if args.breakdown:
            summary["breakdown"] = prediction.breakdown.to_dict("records")
        print_json(summary)
        return 0
    for w in caught:
        print(f"warning: {w.message}")
    print(
        f"{name} on {table.meta.backend}: predicted {prediction.total_ms:.3f} ms, {calibration} "
        f"({len(prediction.breakdown)} units, {hits} exact LUT hits, "
        f"plain sum {prediction.unit_sum_ms:.3f} ms)"
    )
    if measured is not None:
        print(f"measured  {measured:.3f} ms   error {summary['error_pct']:+.1f}%")
    if args.breakdown:
        print(prediction.breakdown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0
