"""``ttmpd pareto``: accuracy against measured latency over budgets and methods."""

from __future__ import annotations

import argparse

from ._common import (
    add_deprecated,
    add_executor_args,
    executor_from_args,
    parse_fractions,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pareto",
        help="sweep latency budgets and methods; plot accuracy vs measured latency",
    )
    p.add_argument("--model", required=True, help="ttmpd checkpoint (.pt) of the base model")
    p.add_argument("--data", required=True, help="labelled test stream (.npz) or mnist")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lut", help="device latency table")
    src.add_argument("--predictor", help="predictor saved by ttmpd lut fit (.json)")
    p.add_argument("--budgets", default="0.3,0.5,0.7,0.9", help="comma-separated fractions")
    p.add_argument("--methods", default="ttmpd,knapsack,uniform")
    p.add_argument("--proxy-samples", type=int, default=128,
                   help="unlabeled stream images the searches score on (128)")  # fmt: skip
    add_deprecated(p, "--calib-samples", "--proxy-samples", "proxy_samples", type=int)
    p.add_argument("--calibrate-variants", type=int, default=6, metavar="N",
                   help="with --lut: calibrate on the model and N measured random prunes "
                   "(default 6, as ttmpd run and predict; 0: uncalibrated)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        required=True,
        help="output folder (pareto.csv, pareto.png; pareto.journal while it runs: running "
        "the same command again skips the jobs it holds)",
    )
    p.add_argument("--json", action="store_true")
    add_executor_args(p)
    p.add_argument(
        "--device-resource",
        metavar="NAME",
        help="Ray resource of the node that measures (default: device:<id> of the table's "
        "device, as ttmpd lut show prints it)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .._io import atomic_path, check_writable
    from ..executor import JobJournal
    from ..pruning import METHODS, SearchConfig, pareto_sweep, plot_pareto
    from ..workflow import (
        load_predictor_for,
        load_scenario,
        measure_on_table_backend,
        sweep_identity,
    )

    budgets = parse_fractions(args.budgets, what="budgets", upper=1.0, closed=False)
    check_writable(Path(args.out) / "pareto.csv")  # before the sweep, which takes minutes
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        SearchConfig(budget=0.5, method=m)  # validates the name
    scenario = load_scenario(args.model, args.data, args.proxy_samples, args.seed)
    model = scenario.checkpoint.model
    predictor, table = load_predictor_for(args.lut, args.predictor, model, scenario.example,
                                          args.calibrate_variants)  # fmt: skip
    device = args.device_resource or f"device:{table.fingerprint.device_id()}"
    out = Path(args.out)
    journal = JobJournal(out / "pareto.journal", sweep_identity(
        args.model, args.data, args.lut or args.predictor, args.proxy_samples,
        args.calibrate_variants, args.seed))  # fmt: skip
    example = scenario.example
    with executor_from_args(args, (device,)) as executor:
        frame = pareto_sweep(
            model, example, predictor, scenario.images, scenario.evaluate,
            lambda m: measure_on_table_backend(table, m, example), budgets, methods,
            SearchConfig(budget=0.5, seed=args.seed, progress=False),
            executor=executor, journal=journal, device=device,
            measure_cpus=table.fingerprint.threads,
        )  # fmt: skip
    with atomic_path(out / "pareto.csv") as tmp:
        frame.to_csv(tmp, index=False)
    plot_pareto(frame, out / "pareto.png",
                title=f"{Path(args.model).stem} on {table.meta.backend}")  # fmt: skip
    journal.remove()
    if args.json:
        print_json({"out": str(out), "rows": frame.to_dict("records"), "methods": list(METHODS)})
        return 0
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {out}/pareto.csv and {out}/pareto.png")
    return 0
