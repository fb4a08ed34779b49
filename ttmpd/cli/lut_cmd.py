"""``ttmpd lut show|validate|merge|check|fit``: inspect, combine, re-check and fit tables."""

from __future__ import annotations

import argparse

from ._common import print_json

#: ``--weight-streaming`` words and the ``LatencyPredictor(memory_pricing=...)`` each means
WEIGHT_STREAMING = {"fit": "fit", "auto": "auto", "on": True, "off": False}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lut", help="show, validate or merge latency tables")
    lut_sub = p.add_subparsers(dest="lut_command", metavar="ACTION", required=True)

    show = lut_sub.add_parser("show", help="summary and first rows of a table")
    show.add_argument("path")
    show.add_argument("--rows", type=int, default=10, help="rows to print (default 10)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)

    validate = lut_sub.add_parser("validate", help="check tables load and are consistent")
    validate.add_argument("paths", nargs="+")
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(func=_validate)

    merge = lut_sub.add_parser("merge", help="merge tables of the same device and settings")
    merge.add_argument("paths", nargs="+")
    merge.add_argument("--out", required=True, help="merged table (.parquet or .csv)")
    merge.add_argument("--force", action="store_true", help="merge different devices anyway")
    merge.add_argument("--json", action="store_true")
    merge.set_defaults(func=_merge)

    check = lut_sub.add_parser(
        "check",
        help="re-measure a few rows: is the table still what this device does now?",
        description="Re-measures anchor rows spread over the table's latency range and "
        "compares them with their stored latency. Exit 0: ok or drifted uniformly (a "
        "calibration absorbs it); exit 1: the rows drifted by different factors, re-profile.",
    )
    check.add_argument("path", help="latency table")
    check.add_argument("--anchors", type=int, default=16, help="rows to re-measure (default 16)")
    check.add_argument("--rounds", type=int, default=3, help="interleaved sweeps (default 3)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_check)

    fit = lut_sub.add_parser("fit", help="fit a latency predictor on a table and save it")
    fit.add_argument("path", help="latency table")
    fit.add_argument("--out", required=True, help="predictor file (.json)")
    fit.add_argument("--regressor", default="blend", help="blend | gbr | hgb | rf | extra | ridge")
    fit.add_argument("--cv", action="store_true", help="cross-validate all regressors first")
    fit.add_argument(
        "--weight-streaming",
        choices=list(WEIGHT_STREAMING),
        default="fit",
        help="price weights that outgrow the device's caches in whole models: the "
        "calibration scales the probed rate (fit, default), keeps it where the leave-one-out "
        "error says it helps (auto), always (on) or never (off)",
    )
    fit.add_argument(
        "--calibrate",
        action="append",
        default=[],
        metavar="MODEL@SHAPE",
        help="measure this model on the table's backend and calibrate whole-model predictions "
        "(repeatable; e.g. resnet20@1,3,32,32 or path/to/pruned.pt)",
    )
    fit.add_argument(
        "--calibrate-variants",
        type=int,
        default=None,
        metavar="N",
        help="with --model: measure the model and N random pruned variants of it to calibrate "
        "(default 6 with --model, as ttmpd run and predict); from N = 3 on, each is also "
        "predicted from the others and the worst miss printed",
    )
    fit.add_argument("--model", help="model to calibrate for (with --calibrate-variants)")
    fit.add_argument("--input-shape", help="N,C,H,W for --model")
    fit.add_argument("--num-classes", type=int, help="classes of a zoo model")
    fit.add_argument("--json", action="store_true")
    fit.set_defaults(func=_fit)


def _show(args: argparse.Namespace) -> int:
    from ..lut import LatencyTable

    table = LatencyTable.load(args.path)
    summary = table.summary()
    rules = table.meta.device_rules
    if args.json:
        print_json(
            {
                "summary": summary,
                "fingerprint": table.fingerprint.to_dict(),
                "device_rules": rules.to_dict() if rules else None,
            }
        )
        return 0
    fp = table.fingerprint
    print(
        f"{args.path}: {summary['rows']} rows, backend {fp.backend}, "
        f"schema v{summary['schema_version']}"
    )
    print(
        f"device: {fp.cpu_model}{' / ' + fp.gpu_name if fp.gpu_name else ''}, "
        f"{fp.physical_cores} cores, threads {fp.threads}/{fp.inter_op_threads}"
    )
    print(f"Ray resource of its measuring node: {summary['device_resource']}")
    if fp.isa or fp.kernel_isa:
        print(f"isa: {fp.isa or '?'}; kernels: {fp.kernel_isa or '?'}; caches: {fp.caches or '?'}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in fp.library_versions))
    if rules is None:
        print("device rules: none stored (a table from before rules were probed)")
    else:
        for line in rules.describe().splitlines():
            print(f"device rule: {line}")
    print(
        f"models: {', '.join(summary['models']) or '-'}; unstable rows: {summary['unstable_rows']}"
    )
    print(f"{'op':<10}{'rows':>6}{'median ms':>12}{'max ms':>12}")
    for op, s in summary["per_op"].items():
        print(f"{op:<10}{s['rows']:>6}{s['median_ms']:>12.4f}{s['max_ms']:>12.4f}")
    if args.rows > 0:
        cols = [
            "op",
            "batch",
            "in_channels",
            "out_channels",
            "in_h",
            "kernel_h",
            "stride_h",
            "groups",
            "latency_ms",
            "spread",
        ]
        print(table.frame[cols].head(args.rows).to_string(index=False))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from ..lut import LatencyTable

    results = []
    for path in args.paths:
        table = LatencyTable.load(path)  # raises LutError with the reason
        results.append({"path": path, "rows": len(table), "backend": table.meta.backend})
    if args.json:
        print_json({"valid": results})
    else:
        for r in results:
            print(f"ok: {r['path']} ({r['rows']} rows, {r['backend']})")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from ..lut import LatencyTable

    tables = [LatencyTable.load(p) for p in args.paths]
    merged = tables[0]
    for t in tables[1:]:
        merged = merged.merge(t, force=args.force)
    merged.save(args.out)
    if args.json:
        print_json({"out": args.out, "rows": len(merged), "inputs": args.paths})
    else:
        print(f"{args.out}: {len(merged)} rows merged from {len(tables)} tables")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..lut import LatencyTable, recheck_table

    table = LatencyTable.load(args.path)
    result = recheck_table(table, args.anchors, args.rounds)
    stamps = table.frame["measured_at"].astype(str)
    advice = {
        "ok": "the table still matches this device",
        "drifted": "every row moved alike; a whole-model calibration measured now absorbs it "
        "(ttmpd lut fit --calibrate-variants N)",
        "inconsistent": f"rows drifted by different factors; re-profile: ttmpd profile ... "
        f"--out NEW_TABLE (backend {table.meta.backend})",
        "unsteady": f"this device's speed moved between the check's own sweeps (rows "
        f"{100 * result.noise:.0f}% apart); rows cannot be compared at ±10% now: check again "
        f"when the device is idle, or with more --rounds",
    }[result.verdict]
    summary = {
        "path": args.path,
        "verdict": result.verdict,
        "median_ratio": round(result.median_ratio, 3),
        "spread": round(result.spread, 3),
        "noise": round(result.noise, 3),
        "bound": round(result.bound, 3),
        "anchors": len(result.keys),
        "measured_from": stamps.min(),
        "measured_to": stamps.max(),
        "advice": advice,
        "rows": [
            {"key": k, "stored_ms": round(s, 5), "now_ms": round(n, 5)}
            for k, s, n in zip(result.keys, result.stored_ms, result.now_ms, strict=True)
        ],
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"{args.path}: {result.verdict}: {len(result.keys)} rows re-measured now take "
            f"{result.median_ratio:.2f}x their stored latency (median; spread p75/p25 "
            f"{1 + result.spread:.2f}, bound {1 + result.bound:.2f}); measured "
            f"{summary['measured_from']} to {summary['measured_to']}"
        )
        print(advice)
    return 1 if result.verdict == "inconsistent" else 0


def _fit(args: argparse.Namespace) -> int:
    from .._io import check_writable
    from ..errors import InputError
    from ..lut import (
        LatencyPredictor,
        LatencyTable,
        backend_for_table,
        cross_validate_regressors,
        save_predictor,
    )
    from ._common import load_model_spec, model_from_args

    check_writable(args.out)  # before cross-validating and calibrating
    table = LatencyTable.load(args.path)
    cv = cross_validate_regressors(table) if args.cv else None
    memory_pricing = WEIGHT_STREAMING[args.weight_streaming]
    predictor = LatencyPredictor(regressor=args.regressor, memory_pricing=memory_pricing)
    predictor.fit(table)
    measured = []
    if args.calibrate_variants is None:
        args.calibrate_variants = 6 if args.model else 0
    if args.calibrate_variants and not args.model:
        raise InputError("--calibrate-variants needs --model (and --input-shape)")
    if args.calibrate_variants:
        from ..pruning import calibrate_predictor

        _, model, example = model_from_args(args)
        measured = calibrate_predictor(
            predictor, model, example, backend_for_table(table), args.calibrate_variants,
            progress=True,
        )  # fmt: skip
    elif args.calibrate:
        from ..pruning import measure_models

        models = [load_model_spec(spec) for spec in args.calibrate]
        measured = measure_models(models, backend_for_table(table))
        predictor.fit_calibration(models, measured)
    save_predictor(predictor, args.out, table, args.path)
    summary = {
        "out": args.out,
        "rows": len(table),
        "regressor": args.regressor,
        "calibration": dict(
            zip(("slope", "ms_per_unit", "offset_ms"), predictor.calibration_, strict=True)
        )
        | {"second_slope": predictor.second_slope_},
        "calibration_models": len(measured),
        "weight_streaming": args.weight_streaming,
        # the scale of the probed streaming rate the calibration priced (0: not priced)
        "weight_streaming_scale": predictor.memory_scale_ if predictor.memory_priced_ else 0.0,
        # what a MiB of weights costs in a model beyond alone (ms; 0: not priced)
        "weight_ms_per_mib": predictor.weight_ms_per_byte_ * 2**20,
        "calibration_loo_pct": [100 * float(v) for v in predictor.calibration_loo_],
        "cv": None if cv is None else cv.to_dict("records"),
    }
    if args.json:
        print_json(summary)
        return 0
    if cv is not None:
        print(cv.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    a, b, c = predictor.calibration_
    second = "blocked-layout" if predictor.blocked_layout_ else "native-path"
    slopes = (
        f"{a:.3f}·Σother + {predictor.second_slope_:.3f}·Σ{second} convs"
        if predictor.blocked_layout_ or predictor.native_conv_slope_
        else f"{a:.3f}·Σunits"
    )
    print(
        f"{args.out}: {args.regressor} on {len(table)} rows; calibration total = "
        f"{slopes} + {b:.4f}·n_units + {c:.3f} ms ({predictor.describe_calibration()})"
    )
    return 0
