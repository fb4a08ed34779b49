"""``ttmpd demo``: ``ttmpd run`` on the embedded default scenario (see :mod:`ttmpd.demo`)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole job on the embedded default (shipped ResNet-20, MNIST under motion blur)",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from .run_cmd import finish, print_stage

    print(f"test stream: {args.out}/stream.npz (MNIST test split, motion blur severity 5)",
          file=sys.stderr)  # fmt: skip
    state = run_demo(args.out, progress=not args.no_progress,
                     on_stage=None if args.json else print_stage)  # fmt: skip
    return finish(state, args)
