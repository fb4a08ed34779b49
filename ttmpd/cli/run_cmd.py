"""``ttmpd run``: the whole job (profile, predict, prune, distil, export, measure, report).

Examples::

    ttmpd run --model base.pt --data stream.npz --backend onnxruntime --budget 0.5 --out runs/x
    ttmpd run ... --method eagleeye          # a baseline instead of ttmpd's search
    ttmpd run ... --resume                   # continue a killed run after its last stage
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_group_args, print_json

METHOD_HELP = (
    "ttmpd | ttmpd-gradual | ttmpd-greedy | knapsack | uniform | halp | eagleeye | netadapt | "
    "tp-magnitude"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="prune and distil a model to a latency budget, end to end, with a report",
        description="Profile the model on the backend (reusing a matching LUT), fit the "
        "latency predictor, prune to the budget with approximated accuracy, distil with "
        "pseudo labels computed once, evaluate on the held-out stream, export to ONNX, "
        "measure, and write OUT/report.md. A killed run continues with --resume.",
    )
    p.add_argument("--model", required=True, help="ttmpd checkpoint (.pt) of the base model")
    p.add_argument("--data", required=True, help="test stream: .npz, image folder, or mnist")
    p.add_argument("--backend", default="onnxruntime", help="torch-cpu | onnxruntime | ...")
    p.add_argument("--budget", type=float, default=0.5, help="target / original latency (0.5)")
    p.add_argument("--method", default="ttmpd", help=METHOD_HELP)
    p.add_argument("--lut", help="device table to reuse and extend (default OUT/lut.parquet)")
    p.add_argument("--threads", type=int, default=1, help="threads of the backend and torch (1)")
    p.add_argument("--device", type=int, default=0,
                   help="CUDA device index of a GPU backend (0); search, adaptive BN, "
                   "distillation and evaluation then run on that GPU")  # fmt: skip
    p.add_argument("--channel-step", type=int, default=8, help="LUT grid channel step (8)")
    p.add_argument("--off-grid-per-unit", type=int, default=8,
                   help="LUT channel counts per unit off the step (8)")  # fmt: skip
    p.add_argument("--calibrate-variants", type=int, default=6,
                   help="measured random prunes calibrating the predictor (6)")  # fmt: skip
    p.add_argument("--finetune-samples", type=int, default=512,
                   help="unlabeled stream images for pruning and fine-tuning (512)")  # fmt: skip
    p.add_argument("--proxy-samples", type=int, default=128,
                   help="of those, images the accuracy proxies use (128)")  # fmt: skip
    p.add_argument("--budget-checks", type=int, default=2,
                   help="searches again when the measured prune misses the budget (2)")  # fmt: skip
    p.add_argument(
        "--importance", default="l1", help="l1 | l2 | bn_scale | taylor | bn_taylor | random"
    )
    add_group_args(p)
    p.add_argument("--loss", default="kd:0.9,ce:0.1", help="distillation losses (kd:0.9,ce:0.1)")
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (10)")
    p.add_argument("--online-teacher", action="store_true",
                   help="baseline: run the teacher at every step instead of caching")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT")
    p.add_argument("--json", action="store_true", help="print run.json's stages as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from ..pipeline import RunConfig

    return RunConfig(
        model=args.model, data=args.data, backend=args.backend, budget=args.budget,
        method=args.method, lut=args.lut, threads=args.threads, device=args.device,
        channel_step=args.channel_step, off_grid_per_unit=args.off_grid_per_unit,
        calibrate_variants=args.calibrate_variants,
        finetune_samples=args.finetune_samples, proxy_samples=args.proxy_samples,
        budget_checks=args.budget_checks, importance=args.importance,
        head_dims=args.head_dims, embedding=args.embedding, loss=args.loss,
        epochs=args.epochs,
        online_teacher=args.online_teacher, seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip


def print_stage(name: str, figures: dict, skipped: bool) -> None:
    if skipped:
        print(f"{name:<10} done before (resumed)", file=sys.stderr)
        return
    shown = {k: v for k, v in figures.items() if isinstance(v, int | float | bool | str)}
    text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in list(shown.items())[:6])  # fmt: skip
    print(f"{name:<10} {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import run_pipeline

    config = config_from_args(args)
    state = run_pipeline(config, args.out, resume=args.resume,
                         on_stage=None if args.json else print_stage)  # fmt: skip
    return finish(state, args)


def finish(state, args: argparse.Namespace) -> int:
    """Print the run's stages as JSON (``--json``) or its summary lines."""
    if args.json:
        print_json({"out": args.out, "stages": state.stages})
    else:
        summarize(state, args.out)
    return 0


def summarize(state, out: str) -> None:
    """The lines a user reads at the end of a run."""
    st = state.stages
    ms, ev = st["measure"], st["evaluate"]
    acc = ev.get("accuracy_final")
    acc0 = ev.get("accuracy_original")
    budget = state.signature["budget"]
    print(f"latency  {ms['original_ms']:.3f} -> {ms['final_ms']:.3f} ms measured "
          f"({ms['measured_ratio']:.2f} of the original; budget {budget})")  # fmt: skip
    if acc is not None:
        print(f"accuracy {100 * acc0:.2f}% -> {100 * acc:.2f}% on {ev['held_out']} held-out images")
    times = ", ".join(f"{k} {v['seconds']:.1f}" for k, v in st.items())
    print(f"stage seconds: {times}")
    print(f"report: {out}/report.md")
