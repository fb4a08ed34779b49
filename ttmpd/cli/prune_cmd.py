"""``ttmpd prune``: latency-aware test-time pruning of a checkpoint to a budget."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ._common import add_deprecated, add_group_args, group_options_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="prune a model to a latency budget with unlabeled test samples",
        description="Search a structured prune whose predicted latency meets the budget, "
        "ranking candidates by predicted accuracy loss per predicted ms saved.",
    )
    p.add_argument("--model", required=True, help="ttmpd checkpoint (.pt) of the base model")
    p.add_argument("--data", required=True, help="test stream: .npz, image folder, or mnist")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lut", help="device latency table (a predictor is fitted on it)")
    src.add_argument("--predictor", help="predictor saved by ttmpd lut fit (.json)")
    p.add_argument("--budget", type=float, required=True, help="target / original latency")
    p.add_argument(
        "--method",
        default="ttmpd",
        help="ttmpd | ttmpd-gradual | ttmpd-greedy | knapsack | uniform, or a baseline: halp | "
        "eagleeye | netadapt | tp-magnitude",
    )
    p.add_argument(
        "--importance", default="l1", help="l1 | l2 | bn_scale | taylor | bn_taylor | random"
    )
    p.add_argument(
        "--round-to", type=int, default=None, metavar="N",
        help="tp-magnitude: keep multiples of N channels (default: any count)",
    )  # fmt: skip
    p.add_argument(
        "--proxy-samples", type=int, default=128,
        help="unlabeled stream images the search scores candidates on (128, as ttmpd run)",
    )  # fmt: skip
    add_deprecated(p, "--calib-samples", "--proxy-samples", "proxy_samples", type=int)
    p.add_argument(
        "--calibrate-variants",
        type=int,
        default=6,
        metavar="N",
        help="with --lut: calibrate on the model and N measured random prunes (default 6, as "
        "ttmpd run and predict; 0: uncalibrated)",
    )
    add_group_args(p)
    p.add_argument("--device", default=None,
                   help="where the search computes: cpu | cuda | cuda:N (default: the GPU of "
                   "a torch-cuda or CUDA-provider table, else cpu)")  # fmt: skip
    p.add_argument("--no-measure", action="store_true", help="skip measuring the result")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._io import check_writable
    from ..pruning import SearchConfig, prune, save_prune_result
    from ..workflow import (
        compute_device_for,
        load_predictor_for,
        load_proxy_images,
        measure_on_table_backend,
    )

    config = SearchConfig(
        budget=args.budget, method=args.method, importance=args.importance, seed=args.seed,
        round_to=args.round_to, groups=group_options_from_args(args),
        progress=not args.no_progress, device=args.device or "cpu",
    )  # fmt: skip
    check_writable(Path(args.out) / "model.pt")  # before minutes of search
    checkpoint, images, example = load_proxy_images(args.model, args.data, args.proxy_samples,
                                                  args.seed)  # fmt: skip
    predictor, table = load_predictor_for(
        args.lut, args.predictor, checkpoint.model, example, args.calibrate_variants
    )
    if args.device is None and table is not None:
        config = dataclasses.replace(config, device=compute_device_for(table))
    result = prune(checkpoint.model, example, predictor, images, config)
    measured = None if args.no_measure else measure_on_table_backend(table, result.model, example)
    summary = save_prune_result(
        result, args.out, example, normalization=checkpoint.normalization,
        num_classes=checkpoint.num_classes, measured_ms=measured,
        extra={"model": args.model, "data": args.data, "proxy_samples": len(images)},
    )  # fmt: skip
    if args.json:
        print_json(summary)
        return 0
    print(
        f"{args.method}: predicted {result.predicted_latency_ms:.3f} ms of "
        f"{result.base_latency_ms:.3f} ms (target {result.target_latency_ms:.3f}), "
        f"{summary['removed_fraction']:.0%} of prunable channels removed, "
        f"{len(result.log)} candidates in {result.search_s:.1f} s"
    )
    if measured is not None:
        print(f"measured  {measured:.3f} ms ({summary['measured_vs_predicted_pct']:+.1f}% vs "
              "predicted)")  # fmt: skip
    print(f"wrote {args.out}/model.pt, plan.json, candidates.csv, summary.json")
    return 0
