"""``ttmpd data``: list the corruptions, preview them, and write corrupted test streams.

Examples::

    ttmpd data list
    ttmpd data list --json
    ttmpd data list --preview corruptions.png --dataset mnist --index 0
    ttmpd data make-stream --dataset mnist --corruption fog --severity 3 --seed 0 \\
        --out stream.npz
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError

DATASETS = ("mnist", "digits")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="test-time data: corruptions and test streams",
        description="List corruptions and write corrupted test streams (.npz).",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    show = sub.add_parser(
        "list",
        help="corruptions and their per-severity parameters",
        description="List corruptions with their parameters for severities 1-5 "
        "(spatial parameters in px@32 are scaled by min(H, W) / 32).",
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.add_argument(
        "--preview",
        metavar="PNG",
        help="also write a grid image: rows = corruptions, columns = severities 0-5",
    )
    show.add_argument("--dataset", choices=DATASETS, default="mnist", help="preview source")
    show.add_argument("--index", type=int, default=0, help="test-split image to preview")
    show.add_argument("--seed", type=int, default=0, help="corruption seed for the preview")
    show.set_defaults(func=_run_list)

    make = sub.add_parser(
        "make-stream",
        help="write a corrupted test stream .npz",
        description="Corrupt the fixed test split of a built-in dataset and write "
        "images (+ labels for evaluation) to an .npz usable as --data.",
    )
    make.add_argument("--dataset", choices=DATASETS, default="mnist")
    make.add_argument("--corruption", required=True, help="see `ttmpd data list`")
    make.add_argument("--severity", type=int, required=True, help="1-5, or 0 for clean")
    make.add_argument("--seed", type=int, default=0, help="seed of the random parts")
    make.add_argument("--limit", type=int, default=None, help="keep the first N images")
    make.add_argument("--out", required=True, metavar="NPZ", help="output .npz path")
    make.set_defaults(func=_run_make_stream)


def _format_table() -> str:
    from ..data import get_corruption, list_corruptions

    lines = []
    for name in list_corruptions():
        record = get_corruption(name)
        kind = "random" if record.random else "fixed"
        lines.append(f"{name}  [{record.family}, {kind}]  {record.description}")
        for param, unit, values in zip(
            record.params, record.units, zip(*record.table, strict=True), strict=True
        ):
            cells = "  ".join(f"{v:g}" for v in values)
            lines.append(f"    {param} ({unit}): {cells}")
    return "\n".join(lines)


def _run_list(args: argparse.Namespace) -> int:
    from ..data import get_corruption, list_corruptions, save_preview
    from ..data.embedded import load_builtin

    if args.json:
        records = [get_corruption(n).as_dict() for n in list_corruptions()]
        json.dump({"reference_side_px": 32, "corruptions": records}, sys.stdout, indent=2)
        print()
    else:
        print(_format_table())
    if args.preview:
        dataset = load_builtin(args.dataset, "test")
        if not 0 <= args.index < len(dataset):
            raise InputError(f"--index {args.index} is out of range; use 0..{len(dataset) - 1}")
        path = save_preview(
            dataset.images[args.index],
            args.preview,
            seed=args.seed,
            title=f"{dataset.name}[{args.index}], seed {args.seed}",
        )
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _run_make_stream(args: argparse.Namespace) -> int:
    from ..data import make_stream

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} must be at least 1")
    info = make_stream(
        args.dataset, args.corruption, args.severity, args.seed, args.out, limit=args.limit
    )
    h, w, c = info.image_shape
    labels = "with labels" if info.has_labels else "no labels"
    print(f"wrote {info.path}: {info.n_images} images {h}x{w}x{c} ({info.name}, {labels})")
    return 0
