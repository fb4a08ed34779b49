"""``ttmpd models``: list the weight-free model zoo with default classes and parameter counts."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the zoo models",
        description=(
            "List the weight-free zoo models (usable as MODEL specs) with their default number "
            "of classes and parameter count for 3 input channels."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import list_models, model_info  # torch is imported only when needed

    infos = [model_info(name, in_channels=3) for name in list_models()]
    if args.json:
        rows = [
            {
                "name": info.name,
                "default_num_classes": info.default_num_classes,
                "num_params": info.num_params,
                "params_m": round(info.params_m, 3),
                "in_channels": info.in_channels,
                "summary": info.summary,
            }
            for info in infos
        ]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(info.name) for info in infos)
    print(f"{'name':<{width}}  {'classes':>7}  {'params(M)':>9}  description")
    for info in infos:
        classes = "-" if info.default_num_classes is None else str(info.default_num_classes)
        print(f"{info.name:<{width}}  {classes:>7}  {info.params_m:>9.2f}  {info.summary}")
    return 0
