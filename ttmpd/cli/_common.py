"""Argument helpers shared by CLI commands (parsing only; the work is in the library)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError

#: dtypes an example input may have: images/features (float32), token ids (int64)
INPUT_DTYPES = ("float32", "int64")


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new option's ``dest`` and says on
    stderr which spelling to use (kept for one release; hidden from --help)."""

    def __init__(self, option_strings, dest, new: str, **kwargs) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"ttmpd: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kw) -> None:
    """Accept ``old`` as a deprecated spelling of ``new`` (same ``dest``)."""
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, **kw)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` (or ``1x3x224x224``) -> ``(1, 3, 224, 224)``, else InputError."""
    parts = text.replace("x", ",").replace(" ", "").split(",")
    try:
        shape = tuple(int(p) for p in parts if p)
    except ValueError:
        shape = ()
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise InputError(
            f"cannot parse input shape {text!r}; give positive integers like 1,3,224,224"
        )
    return shape


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"1,3,224,224"`` -> ``("float32", (1, 3, 224, 224))``; ``"int64:1,128"`` ->
    ``("int64", (1, 128))`` (token ids). InputError names a bad dtype or shape."""
    dtype, colon, dims = text.strip().rpartition(":")
    if not colon:
        dtype = "float32"
    if dtype not in INPUT_DTYPES:
        raise InputError(
            f"unknown input dtype {dtype!r} in {text!r}; give one of {', '.join(INPUT_DTYPES)}"
            " before a colon, e.g. int64:1,128 for token ids"
        )
    return dtype, parse_shape(dims)


def example_input(model, dtype: str, shape: tuple[int, ...]):
    """A seeded example input: N(0, 1) floats, or int64 ids below the vocabulary of the
    model's first ``nn.Embedding`` (a transformer's token embedding)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    if dtype == "float32":
        return torch.randn(*shape, generator=generator)
    embedding = next((m for m in model.modules() if isinstance(m, torch.nn.Embedding)), None)
    if embedding is None:
        raise InputError(
            "int64 inputs are token ids for an nn.Embedding, and the model has none; give a "
            "float shape like 1,3,224,224"
        )
    return torch.randint(0, embedding.num_embeddings, shape, generator=generator)


def parse_fractions(
    text: str, what: str = "keep fractions", upper: float = 1.0, closed: bool = True
) -> tuple[float, ...]:
    """``"0.25,0.5"`` -> ``(0.25, 0.5)``: values in (0, upper] (``closed``) or (0, upper)."""
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        values = ()
    inside = (lambda v: 0 < v <= upper) if closed else (lambda v: 0 < v < upper)
    if not values or not all(inside(v) for v in values):
        interval = f"(0, {upper:g}]" if closed else f"(0, {upper:g})"
        raise InputError(f"cannot parse {what} {text!r}; give values in {interval} like 0.3,0.5")
    return values


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("backend")
    g.add_argument(
        "--backend",
        default="torch-cpu",
        help="torch-cpu | torch-cuda | onnxruntime | openvino | fake (default: torch-cpu)",
    )
    g.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    g.add_argument("--inter-op-threads", type=int, default=1, help="inter-op threads")
    g.add_argument(
        "--provider", default="CPUExecutionProvider", help="ONNX Runtime execution provider"
    )
    g.add_argument(
        "--graph-optimization",
        default="all",
        help="ONNX Runtime graph optimisation: disable|basic|extended|all (default all)",
    )
    g.add_argument("--device", type=int, default=0, help="CUDA device index")


def add_group_args(parser: argparse.ArgumentParser) -> None:
    """Flags for the group kinds a search may prune beyond channels and attention heads
    (:class:`~ttmpd.pruning.GroupOptions`; heads and MLP widths are always offered)."""
    g = parser.add_argument_group("pruning groups")
    g.add_argument(
        "--head-dims",
        action="store_true",
        help="also prune head dims: every head of an attention module loses the same dims",
    )
    g.add_argument(
        "--embedding",
        action="store_true",
        help="also prune widths a LayerNorm normalises (a transformer's embedding width); "
        "the pruned model then differs from the masked one the proxies score",
    )


def group_options_from_args(args: argparse.Namespace):
    """The :class:`~ttmpd.pruning.GroupOptions` of ``--head-dims``/``--embedding``."""
    from ..pruning import GroupOptions

    return GroupOptions(head_dims=args.head_dims, embedding=args.embedding)


def backend_from_args(args: argparse.Namespace):
    """The backend the flags name; ``--threads`` also pins torch's own work in this process
    (proxies, adaptive BN, fine-tuning), not only the backend's."""
    import torch

    from ..profiler import BackendConfig, get_backend

    if args.threads >= 1:
        torch.set_num_threads(args.threads)

    config = BackendConfig(
        threads=args.threads,
        inter_op_threads=args.inter_op_threads,
        provider=args.provider,
        graph_optimization=args.graph_optimization,
        device=args.device,
    )
    return get_backend(args.backend, config)


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def add_model_args(parser: argparse.ArgumentParser, *, shape_required: bool = False) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="zoo name (resnet18, ...), path/file.py:factory, package.module:factory, "
        "or a ttmpd checkpoint (.pt)",
    )
    parser.add_argument(
        "--input-shape",
        required=shape_required,
        help="N,C,H,W of the example input, e.g. 1,3,224,224, or int64:N,TOKENS for token "
        "ids, e.g. int64:1,128 (default: from the checkpoint)",
    )
    parser.add_argument("--num-classes", type=int, help="classes of a zoo model")


def model_from_args(args: argparse.Namespace):
    """``(name, model, example_input)`` from --model/--input-shape/--num-classes."""
    from ..models import list_models, load_checkpoint, load_model

    spec = args.model
    dtype, shape = parse_input_shape(args.input_shape) if args.input_shape else ("float32", None)
    if spec.lower().endswith((".pt", ".pth")) or Path(spec).is_dir():
        checkpoint = load_checkpoint(spec)
        model = checkpoint.model
        if shape is None and checkpoint.input_shape is not None:
            shape = (1, *checkpoint.input_shape)
    elif spec in list_models():
        kwargs = {"num_classes": args.num_classes} if args.num_classes else {}
        if shape is not None and len(shape) == 4 and dtype == "float32":
            kwargs["in_channels"] = shape[1]
        model = load_model(spec, **kwargs)
    else:
        model = load_model(spec)
    if shape is None:
        raise InputError(f"model {spec!r} needs --input-shape, e.g. --input-shape 1,3,224,224")
    name = spec.rsplit("/", 1)[-1]
    example = example_input(model, dtype, shape)
    check_runs(model.eval(), example, name)
    return name, model, example


def check_runs(model, example, name: str) -> None:
    """One forward pass of ``example``; InputError naming the shape when it fails, before
    any measuring or searching starts."""
    import torch

    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:  # any failure of user code on this input is bad input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        shape = ",".join(str(d) for d in example.shape)
        raise InputError(
            f"model {name!r} does not run on an input of shape {shape} ({first}); pass the "
            "full batch shape N,C,H,W with the model's channels, e.g. --input-shape 1,3,32,32"
        ) from None


def load_model_spec(text: str):
    """``MODEL@N,C,H,W`` or ``MODEL@int64:N,TOKENS`` (or a checkpoint with a stored input
    shape) -> ``(model, input)``."""
    spec, _, shape = text.partition("@")
    args = argparse.Namespace(model=spec, input_shape=shape or None, num_classes=None)
    _, model, example = model_from_args(args)
    return model, example


def add_executor_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("executor")
    g.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: one job after another in this process; ray: jobs as Ray tasks "
        "(the ray extra; docs/guide/ray.md)",
    )
    g.add_argument(
        "--ray-address",
        help="head of a running Ray cluster (host:port, ray://host:port or auto); default: "
        "start a local Ray cluster whose node is the device",
    )
    g.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="retries of a Ray task whose worker or node died (default 3)",
    )


def executor_from_args(args: argparse.Namespace, devices: tuple[str, ...] = ()):
    """The executor the flags name. A Ray executor is connected and checked to carry
    ``devices`` before it is returned, so a bad address or a missing device resource fails
    before anything is written."""
    from ..executor import RayConfig, make_executor

    if args.executor != "ray":
        if args.ray_address:
            raise InputError("--ray-address needs --executor ray")
        return make_executor(args.executor)
    config = RayConfig(address=args.ray_address, max_retries=args.max_retries,
                       local_resources=tuple((d, 1.0) for d in devices))  # fmt: skip
    executor = make_executor("ray", config)
    try:
        executor.connect()
        executor.require(devices)
    except BaseException:
        executor.close()
        raise
    return executor
