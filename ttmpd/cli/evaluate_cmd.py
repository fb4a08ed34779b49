"""``ttmpd evaluate``: accuracy of a checkpoint on the clean and corrupted test streams.

Examples::

    ttmpd evaluate --model base.pt --data mnist --out eval/
    ttmpd evaluate --model base.pt --data mnist --corruptions fog,contrast --severities 3,5
    ttmpd evaluate --model base.pt --data stream.npz      # a labeled stream: one accuracy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ._common import print_json

BUILTIN = ("mnist", "digits")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy of a checkpoint on clean and corrupted test data",
        description="Evaluate a ttmpd checkpoint on the clean test split of a built-in "
        "dataset and on each corruption x severity of it (or on one labeled stream .npz). "
        "With --out, writes accuracy.csv and accuracy_heatmap.png.",
    )
    parser.add_argument("--model", required=True, metavar="PT", help="ttmpd checkpoint (.pt)")
    parser.add_argument(
        "--data", default="mnist", help="mnist | digits | a labeled stream .npz (default mnist)"
    )
    parser.add_argument(
        "--corruptions", default="all", help="all (default) or names like fog,contrast"
    )
    parser.add_argument("--severities", default="1,2,3,4,5", help="e.g. 3,5 (default 1..5)")
    parser.add_argument("--seed", type=int, default=0, help="corruption seed (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N test images")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", metavar="DIR", help="write accuracy.csv + accuracy_heatmap.png")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _stream_row(args: argparse.Namespace, checkpoint) -> dict:
    import numpy as np

    from ..base import check_compatible, evaluate
    from ..data import load_path

    if args.corruptions != "all" or args.severities != "1,2,3,4,5":
        raise InputError(
            "--corruptions/--severities apply to mnist/digits; a stream file is already "
            "corrupted, drop them"
        )
    data = load_path(args.data, labels=True)
    if args.limit is not None:
        data = data.subset(slice(0, args.limit))
    check_compatible(checkpoint, data)
    corruption, severity = data.name, -1
    if Path(args.data).suffix.lower() == ".npz":
        with np.load(args.data, allow_pickle=False) as npz:
            if "corruption" in npz.files and "severity" in npz.files:
                corruption, severity = str(npz["corruption"]), int(npz["severity"])
    accuracy = evaluate(
        checkpoint.model, data.images, data.labels, checkpoint.normalization, args.batch_size
    )
    return {"corruption": corruption, "severity": severity, "accuracy": accuracy, "n": len(data)}


def run(args: argparse.Namespace) -> int:
    import time

    import pandas as pd
    import torch

    from .._io import ensure_writable_dir
    from ..base import (
        COLUMNS,
        resolve_corruptions,
        resolve_severities,
        robustness_table,
        save_heatmap,
        summarize,
    )
    from ..models import load_checkpoint

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads {args.threads} must be at least 1")
    if args.data in BUILTIN:  # check names before creating --out or loading anything
        resolve_corruptions(args.corruptions)
        resolve_severities(args.severities)
    elif not Path(args.data).exists():
        raise InputError(
            f"--data {args.data!r} is neither a built-in dataset ({', '.join(BUILTIN)}) nor an "
            "existing file; give one of those or a labeled stream .npz"
        )
    checkpoint = load_checkpoint(args.model)
    out = Path(args.out) if args.out else None
    if out is not None:
        ensure_writable_dir(out / "accuracy.csv")
    previous = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        if args.data in BUILTIN:
            table = robustness_table(
                checkpoint,
                args.data,
                args.corruptions,
                args.severities,
                args.seed,
                batch_size=args.batch_size,
                limit=args.limit,
                progress=not args.no_progress,
            )
        else:
            table = pd.DataFrame([_stream_row(args, checkpoint)], columns=list(COLUMNS))
    finally:
        torch.set_num_threads(previous)
    elapsed = time.perf_counter() - start
    stream = args.data not in BUILTIN
    written = []
    if out is not None:
        from .._io import atomic_path

        csv_path = out / "accuracy.csv"
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp, index=False)
        written.append(csv_path)
        if not stream:
            written.append(
                save_heatmap(table, out / "accuracy_heatmap.png", title=Path(args.model).name)
            )
    summary = summarize(table) if not stream else None
    if args.json:
        payload = {"model": args.model, "data": args.data, "seconds": round(elapsed, 2)}
        payload["rows"] = table.to_dict("records")
        if summary is not None:
            payload["summary"] = summary
        payload["written"] = [str(p) for p in written]
        print_json(payload)
    else:
        _print_summary(table, summary, elapsed)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _print_summary(table, summary: dict | None, elapsed: float) -> None:
    if summary is None:
        row = table.iloc[0]
        severity = f"@{row['severity']}" if row["severity"] >= 0 else ""
        print(
            f"{row['corruption']}{severity}: accuracy {row['accuracy'] * 100:.2f}% "
            f"({row['n']} images, {elapsed:.1f} s)"
        )
        return
    n = int(table["n"].iloc[0])
    print(f"clean accuracy: {summary['clean'] * 100:.2f}% ({n} images)")
    if summary["mean_by_severity"]:
        print(f"mean over {summary['n_corruptions']} corruptions:")
        for severity, accuracy in summary["mean_by_severity"].items():
            print(f"  severity {severity}: {accuracy * 100:.2f}%")
        print(f"  all severities: {summary['mean_corrupted'] * 100:.2f}%")
    print(f"evaluated {len(table)} cells x {n} images in {elapsed:.1f} s")
