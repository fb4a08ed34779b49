"""``ttmpd train-base``: train a zoo model on a built-in dataset's source split.

Example::

    ttmpd train-base --model resnet20 --data mnist --epochs 12 --seed 0 --threads 1 \\
        --out base.pt
"""

from __future__ import annotations

import argparse
import sys

from ._common import print_json

DATASETS = ("mnist", "digits")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-base",
        help="train a base model on a dataset's source split",
        description="Train a zoo model (adapted to the data's channels) or your own "
        "file.py:factory model on the source split "
        "of a built-in dataset with SGD or AdamW + cosine schedule and random shifts, report "
        "its clean test accuracy, and save a ttmpd checkpoint with the normalisation used.",
    )
    parser.add_argument("--model", default="resnet20",
                        help="zoo name (default resnet20), or your own path/file.py:factory "
                        "taking the data's channels and classes")  # fmt: skip
    parser.add_argument("--data", choices=DATASETS, default="mnist", help="built-in dataset")
    parser.add_argument("--epochs", type=int, default=12, help="passes over the source split")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (0.1)")
    parser.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        default="sgd",
        help="sgd (Nesterov) or adamw (for transformers; e.g. --lr 1e-3 --weight-decay 0.05)",
    )
    parser.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (sgd)")
    parser.add_argument(
        "--weight-decay", type=float, default=5e-4, help="L2 penalty (sgd), decoupled (adamw)"
    )
    parser.add_argument(
        "--max-shift", type=int, default=None, help="random shift in px (default: 2 per 28 px)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of init/shuffle/shifts")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's setting)"
    )
    parser.add_argument("--out", required=True, metavar="PT", help="checkpoint to write")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._io import ensure_writable_dir
    from ..base import TrainConfig, TrainingInterrupted, train_base

    config = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        max_shift_px=args.max_shift,
        seed=args.seed,
        threads=args.threads,
    )
    ensure_writable_dir(args.out)  # fail before training, not after
    result = train_base(config, args.data, progress=not args.no_progress)
    try:
        path = result.save(args.out)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted while writing {args.out}; it is unchanged"
        ) from None
    summary = {
        "checkpoint": str(path),
        "model": config.model,
        "dataset": result.dataset,
        "input_shape": list(result.input_shape),
        "normalization": {"mean": result.normalization[0], "std": result.normalization[1]},
        "clean_test_accuracy": result.clean_accuracy,
        "train_accuracy": result.train_accuracy,
        "epoch_losses": list(result.epoch_losses),
        "train_time_s": round(result.train_time_s, 2),
        "samples_per_s": round(result.samples_per_s, 1),
        "threads": result.threads,
    }
    if args.json:
        print_json(summary)
        return 0
    losses = " ".join(f"{v:.3f}" for v in result.epoch_losses)
    print(
        f"trained {config.model} on {result.dataset} ({result.n_train} images, "
        f"{config.epochs} epochs) in {result.train_time_s:.1f} s "
        f"({result.samples_per_s:.0f} img/s, {result.threads} threads)"
    )
    print(f"epoch losses: {losses}")
    if result.clean_accuracy is not None:
        print(f"clean test accuracy: {result.clean_accuracy * 100:.2f}% ({result.n_test} images)")
    print(f"wrote {path}", file=sys.stderr)
    return 0
