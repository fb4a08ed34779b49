"""``ttmpd distill``: recover a pruned student's accuracy by distillation from its teacher.

Examples::

    ttmpd distill --teacher base.pt --student pruned/student.pt --data stream.npz \\
        --loss kd --finetune-samples 512 --select balanced --epochs 10 --out distilled/
    ttmpd distill ... --loss kd:0.9,at:1000,ce:0.1 --features layer1,layer2,layer3
    ttmpd distill ... --scheme dml            # byot | dml | adversarial | standard
    ttmpd distill ... --online                # baseline: teacher run at every step
    ttmpd distill ... --resume                # continue from distilled/train_state.pt
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_deprecated, print_json

#: Kept in sync with ttmpd.distill (a test checks); listed here so --help imports no torch.
LOSS_NAMES = "ab, at, cc, ce, crd, dkd, fitnet, fsp, ft, kd, nst, pkt, rkd, sp, vid"
SELECTIONS = ("random", "balanced", "reliable")


def _layers(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(p.strip() for p in text.split(",") if p.strip()) or None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="fine-tune a pruned student by distillation on unlabeled test samples",
        description="Select a small subset of the unlabeled test stream, run the teacher once "
        "on it (pseudo labels and hooked features cached), and fine-tune the student with "
        "the given losses. Writes OUT/student.pt, history.csv, summary.json and "
        "train_state.pt (for --resume). Stream labels, if present, are used only to report "
        "accuracy on the held-out rest of the stream.",
    )
    parser.add_argument("--teacher", required=True, metavar="PT", help="unpruned checkpoint")
    parser.add_argument(
        "--student", required=True, metavar="PT",
        help="pruned checkpoint, or the folder ttmpd prune wrote",
    )  # fmt: skip
    parser.add_argument(
        "--data", required=True, help="test stream .npz, image folder, or mnist (embedded)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--loss",
        default="kd:0.9,ce:0.1",
        help="name[:weight],... e.g. kd:0.9,at:1000,ce:0.1 (default kd:0.9,ce:0.1); "
        f"losses: {LOSS_NAMES}",
    )
    parser.add_argument("--scheme", default="standard", help="standard|byot|dml|adversarial")
    parser.add_argument(
        "--features",
        help="student module paths to hook, e.g. layer1,layer2,layer3 "
        "(default: the layerN stages, when a loss needs features)",
    )
    parser.add_argument("--teacher-features", help="teacher module paths (default: --features)")
    parser.add_argument(
        "--finetune-samples", type=int, default=512,
        help="unlabeled stream images to fine-tune on (512, as ttmpd run)",
    )  # fmt: skip
    add_deprecated(parser, "--subset", "--finetune-samples", "finetune_samples", type=int)
    parser.add_argument(
        "--select", default="random", choices=SELECTIONS, help="subset selection (random)"
    )
    parser.add_argument(
        "--entropy-max", type=float, default=0.4, help="reliable: keep entropy < X ln C (0.4)"
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs over the subset (10)")
    parser.add_argument("--steps", type=int, help="optimiser steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--optimizer", default="sgd", help="sgd|adam|adamw (sgd)")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate (0.01)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="(5e-4)")
    parser.add_argument("--schedule", default="cosine", help="cosine|step|constant (cosine)")
    parser.add_argument(
        "--warmup-epochs",
        type=float,
        default=0.0,
        help="linear learning-rate warm-up before the schedule, in epochs (0)",
    )
    parser.add_argument(
        "--no-adapt-bn",
        action="store_true",
        help="keep the BN statistics averaged during training (default: re-estimated on "
        "the fine-tune images with the final weights, before each evaluation and at the end)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of selection and training")
    parser.add_argument("--views", type=int, default=1, help="cached augmented views (1 = none)")
    parser.add_argument(
        "--cache-dir", help="keep teacher outputs as numpy memmaps here (reused when valid)"
    )
    parser.add_argument("--online", action="store_true", help="run the teacher every step")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where teacher and student compute: cpu | cuda | cuda:N (cpu)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..distill import CacheConfig, DistillConfig, SelectionConfig, distill_files
    from ..errors import InputError

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads} must be at least 1")
        torch.set_num_threads(args.threads)
    config = DistillConfig(
        loss=args.loss,
        scheme=args.scheme,
        feature_layers=_layers(args.features),
        teacher_layers=_layers(args.teacher_features),
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        adapt_bn=not args.no_adapt_bn,
        seed=args.seed,
        online=args.online,
        progress=not args.no_progress,
        device=args.device,
    )
    selection = SelectionConfig(
        strategy=args.select,
        size=args.finetune_samples,
        entropy_fraction=args.entropy_max,
        seed=args.seed,
    )
    cache = CacheConfig(views=args.views, directory=args.cache_dir, device=args.device)
    summary = distill_files(
        args.teacher,
        args.student,
        args.data,
        args.out,
        config,
        selection,
        cache,
        resume=args.resume,
    )
    if args.json:
        print_json(summary)
    else:
        _print_summary(summary)
    print(f"wrote {args.out}/student.pt, history.csv, summary.json", file=sys.stderr)
    return 0


def _print_summary(s: dict) -> None:
    print(
        f"distilled with {s['loss']} ({s['scheme']}) on {s['subset']} samples, "
        f"{s['epochs']} epochs / {s['steps']} steps in {s['train_seconds']:.1f} s "
        f"(+{s['cache_seconds']:.1f} s teacher cache)"
    )
    if s["online"]:
        print(f"teacher forwards (online): {s['teacher_forwards']}")
    else:
        print(
            f"teacher forwards: {s['teacher_forwards']} (cache), "
            f"{s['teacher_forwards_saved']} saved vs online"
        )
    if s["accuracy_after"] is not None:
        before = s["accuracy_before"]
        print(
            f"held-out accuracy ({s['held_out']} images): {before * 100:.2f}% -> "
            f"{s['accuracy_after'] * 100:.2f}% ({(s['accuracy_after'] - before) * 100:+.2f} pp)"
        )
