"""``ttmpd models``: list the weight-free model zoo; ``ttmpd models save``: make a ttmpd
checkpoint of any model spec (your own ``file.py:factory`` included)."""

from __future__ import annotations

import argparse
import json

from ._common import add_model_args


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
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    save = actions.add_parser(
        "save",
        help="save any model spec as a ttmpd checkpoint (what prune, pareto, run and distill take)",
        description=(
            "Build the model named by --model (a zoo name, torchvision:NAME, timm:NAME, "
            "path/to/file.py:factory whose factory returns your trained model, or "
            "package.module:factory), check that it runs on --input-shape, and save it as a "
            "ttmpd checkpoint with its input shape, classes and input normalisation."
        ),
    )
    add_model_args(save, shape_required=True)
    save.add_argument("--mean", help="per-channel input mean on the [0, 1] scale, e.g. 0.5,0.5,0.5")
    save.add_argument("--std", help="per-channel input std, e.g. 0.25,0.25,0.25 (with --mean)")
    save.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    save.set_defaults(func=run_save)


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


def _floats(text: str, flag: str) -> list[float]:
    from ..errors import InputError

    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{flag} wants comma-separated numbers, got {text!r}") from None


def run_save(args: argparse.Namespace) -> int:
    from .._io import check_writable
    from ..errors import InputError
    from ..models import save_checkpoint
    from ._common import model_from_args

    if (args.mean is None) != (args.std is None):
        raise InputError("give --mean and --std together (or neither: inputs stay in [0, 1])")
    if not args.out.lower().endswith((".pt", ".pth")):
        raise InputError(f"--out {args.out!r} must end in .pt")
    check_writable(args.out)
    _name, model, example = model_from_args(args)
    import torch

    with torch.no_grad():
        out = model.eval()(example)
    num_classes = args.num_classes or (int(out.shape[-1]) if out.ndim == 2 else None)
    normalization = None
    if args.mean is not None:
        normalization = {"mean": _floats(args.mean, "--mean"), "std": _floats(args.std, "--std")}
    path = save_checkpoint(
        args.out, model, input_shape=list(example.shape[1:]), num_classes=num_classes,
        normalization=normalization, metadata={"source": args.model},
    )  # fmt: skip
    print(f"saved {path} ({type(model).__name__}, input {tuple(example.shape[1:])}, "
          f"{num_classes} classes)")  # fmt: skip
    return 0
