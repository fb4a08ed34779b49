"""``ttmpd demo``: the embedded default scenario end to end (see :mod:`ttmpd.demo`)."""

from __future__ import annotations

import argparse

from ._common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the embedded default scenario (MNIST under motion blur)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import as_dict, run_demo

    result = run_demo(args.out, progress=not args.no_progress)
    if args.json:
        print_json(as_dict(result))
        return 0
    print(f"test stream: {result.stream_path} (MNIST test split, motion blur severity 5)")
    print(f"corruption preview: {result.preview_path}")
    print(f"{'backend':<13}{'LUT rows':>9}{'new':>6}{'profile s':>11}{'model ms':>10}"
          f"{'LUT sum ms':>12}{'sum/model':>11}")  # fmt: skip
    for b in result.backends:
        print(
            f"{b.backend:<13}{b.rows:>9}{b.measured:>6}{b.profile_s:>11.1f}{b.model_ms:>10.3f}"
            f"{b.lut_sum_ms:>12.3f}{b.lut_sum_ms / b.model_ms:>11.2f}"
        )
    print(f"report folder: {result.out_dir}")
    return 0
