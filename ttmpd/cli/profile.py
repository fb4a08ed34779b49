"""``ttmpd profile``: build a device latency table for a model."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ._common import (
    add_backend_args,
    add_executor_args,
    add_model_args,
    backend_from_args,
    executor_from_args,
    model_from_args,
    parse_fractions,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="measure per-layer latency of a model's pruning grid into a LUT",
        description="Measure every unit configuration channel pruning can produce for a "
        "model on a backend, appending to a resumable latency table.",
    )
    add_model_args(p)
    add_backend_args(p)
    grid = p.add_argument_group("grid")
    g = grid.add_mutually_exclusive_group()
    g.add_argument(
        "--channel-step",
        type=int,
        help="every multiple of this channel count (default: the staircase grid, one count "
        "per latency step of the device's channel block, sparser on wide layers)",
    )
    g.add_argument("--keep-fractions", help="keep-fractions instead, e.g. 0.25,0.5,0.75")
    grid.add_argument(
        "--max-variants-per-unit",
        type=int,
        default=64,
        help="cap on in x out channel pairs per unit (diagonal kept, rest sampled)",
    )
    grid.add_argument(
        "--off-grid-per-unit",
        type=int,
        default=8,
        help="extra channel counts per unit off the multiples of 8, where kernels may "
        "leave their fast path (default 8; 0 to skip)",
    )
    grid.add_argument(
        "--sample-fraction",
        type=float,
        default=1.0,
        help="sparse profiling: measure this share of each unit's grid, spread evenly; the "
        "predictor fills in the rest (default 1: the whole grid)",
    )
    timing = p.add_argument_group("timing")
    timing.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved measurements per configuration, the median is kept; the last is "
        "skipped when the first agree within --target-ci (default 3)",
    )
    timing.add_argument("--max-seconds", type=float, default=1.0, help="time cap per entry")
    timing.add_argument(
        "--target-ci", type=float, default=0.02, help="stop when the median's 95%% CI is ±this"
    )
    p.add_argument("--out", required=True, help="output table (.parquet or .csv)")
    p.add_argument("--resume", action="store_true", help="continue or extend an existing table")

    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--no-progress", action="store_true", help="hide the plan, ETA and progress bar")
    fleet = p.add_argument_group("fleet (--executor ray)")
    fleet.add_argument(
        "--device-resource",
        action="append",
        metavar="NAME",
        help="Ray resource carried by the nodes of one device type; the grid is split across "
        "them. Repeat for several device types: one table each, OUT.NAME.parquet",
    )
    fleet.add_argument(
        "--workers",
        type=int,
        help="grid shards per device type (default: one per unit of the resource)",
    )
    add_executor_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..lut import profile_model

    if args.executor == "ray" or args.device_resource or args.workers or args.ray_address:
        if args.executor != "ray" or not args.device_resource:
            raise InputError(
                "fleet profiling needs --executor ray and --device-resource NAME (the Ray "
                "resource the device's nodes carry)"
            )
        return _run_fleet(args)
    backend = backend_from_args(args)
    backend.require_available()
    grid, timing = _grid_and_timing(args)
    name, model, example = model_from_args(args)
    result = profile_model(
        model,
        example,
        backend,
        args.out,
        grid=grid,
        timing=timing,
        resume=args.resume,
        model_name=name,
        rounds=args.rounds,
        progress=not args.no_progress,
        on_plan=None if args.no_progress else _print_plan,
    )
    summary = {
        "out": str(result.path),
        "backend": backend.name,
        "rows": len(result.table),
        "measured": result.measured,
        "reused": result.reused,
        "entries_per_s": round(result.measured / result.wall_s, 2) if result.measured else None,
        "unstable_rows": int(result.table.frame["unstable"].sum()),
        "uncovered": [f"{u.aten} in {u.name or '<model>'} {u.shapes}" for u in result.uncovered],
        "wall_s": round(result.wall_s, 3),
        "overhead": round(result.overhead, 2) if result.measured else None,
        "drift_ratio": round(result.drift.median_ratio, 3) if result.drift else None,
        "drift_rebased": bool(result.drift and result.drift.applies),
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"{summary['out']}: {summary['rows']} rows ({result.measured} measured, "
            f"{result.reused} already there) on {backend.name} in {result.wall_s:.1f} s"
        )
        if result.drift and result.drift.drifted:
            d = result.drift
            what = (
                "new rows were mapped onto the table's time base"
                if d.applies
                else "the checks disagree, so new rows are kept as measured"
            )
            print(
                f"timing drift: re-measured rows took {d.before_ratio:.2f}x their stored "
                f"latency before and {d.after_ratio:.2f}x after the new rows; {what}"
            )
        if result.uncovered:
            print(f"not priced ({len(result.uncovered)} ops): " + "; ".join(summary["uncovered"]))
    return 0


def _grid_and_timing(args: argparse.Namespace):
    from ..profiler import GridConfig, TimingConfig

    grid = GridConfig(
        channel_step=args.channel_step,
        keep_fractions=parse_fractions(args.keep_fractions) if args.keep_fractions else None,
        max_variants_per_unit=args.max_variants_per_unit,
        off_grid_per_unit=args.off_grid_per_unit,
        sample_fraction=args.sample_fraction,
    )
    return grid, TimingConfig(max_seconds=args.max_seconds, target_rel_ci=args.target_ci)


def _run_fleet(args: argparse.Namespace) -> int:
    """Each device type's grid split across the Ray nodes carrying its resource."""
    from ..lut import FleetRequest, fleet_outputs, profile_fleet

    backend = backend_from_args(args)  # checks the name; availability is checked on the nodes
    grid, timing = _grid_and_timing(args)
    name, model, example = model_from_args(args)
    devices = tuple(args.device_resource)
    request = FleetRequest(backend.name, devices, backend.config, grid, timing, args.rounds,
                           name, args.workers)  # fmt: skip
    for path in fleet_outputs(args.out, devices).values():  # before starting Ray
        if path.exists() and not args.resume:
            raise InputError(f"{path} exists; pass --resume to extend it or choose another path")
    with executor_from_args(args, devices) as executor:
        result = profile_fleet(model, example, request, args.out, executor, args.resume)
    summary = {
        device: {
            "out": str(result.paths[device]),
            "rows": result.rows[device],
            "measured": result.measured[device],
            "shards": [
                {"host": s.host, "rows": len(s.table), "measured": s.measured}
                for s in result.shards[device]
            ],
        }
        for device in devices
    }
    if args.json:
        print_json({"backend": backend.name, "wall_s": round(result.wall_s, 3), "devices": summary})
        return 0
    for device, info in summary.items():
        hosts = sorted({s["host"] for s in info["shards"]})
        print(f"{info['out']}: {info['rows']} rows on {device} ({info['measured']} measured now "
              f"in {len(info['shards'])} shards on {', '.join(hosts)})")  # fmt: skip
    print(f"{backend.name} fleet profile in {result.wall_s:.1f} s")
    return 0


def _print_plan(plan) -> None:
    """The planned count before measuring, then the ETA after the pilot (on stderr)."""
    if plan.eta_s is None:
        grid = plan.grid
        how = {"step": f"channel step {grid.channel_step}", "fractions": "keep-fractions"}
        print(
            f"planned {plan.planned} configurations of {plan.units} units "
            f"({plan.reused} already in the table; {how.get(grid.kind, 'staircase')} grid, "
            f"<= {grid.max_variants_per_unit} per unit, {plan.rounds} rounds); ETA after a "
            f"pilot of {plan.pilot}",
            file=sys.stderr,
        )
    elif plan.planned > plan.pilot:
        from tqdm.auto import tqdm

        tqdm.write(  # above the progress bar
            f"ETA {_duration(plan.eta_s)} for the other {plan.planned - plan.pilot} "
            f"configurations ({plan.rate:.1f}/s in the pilot)",
            file=sys.stderr,
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
