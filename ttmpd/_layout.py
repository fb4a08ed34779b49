"""Which memory layout a model can be *trained* in on this device: probed, not assumed.

oneDNN's channels_last (NHWC) convolutions train faster than NCHW on many CPUs, but some
of its kernels are broken on some instruction sets for some shapes: on AVX2, the backward
pass of a 1x1, stride-2 conv in channels_last corrupts the heap for small input channel
counts (design note ``docs/design/avx2-conv-backward.md``). Pruning produces exactly such
shapes. A crash inside a native kernel cannot be caught in-process, so the probe runs the
model's own convolutions, forward and backward at the training batch shape, in a child
process:

1. **safety**: every distinct conv three times in channels_last, with glibc's heap checks
   on (a hang past the timeout before this pass ends, or a crash of the child at any
   point, marks the layout unsafe: a corrupted heap may abort only at a later free);
2. **speed**: each distinct conv's forward + backward time in both layouts, summed over
   the model's convs (``time = Σ_convs min over repeats``).

:func:`training_layout` then picks channels_last only if it is safe *and* at least
:data:`MIN_SPEEDUP` faster, else NCHW. Results are cached per process for the same convs,
threads and oneDNN/ATen ISA settings of the environment.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

logger = logging.getLogger(__name__)

MIN_SPEEDUP = 1.05
"""channels_last must cut the probed conv time by this factor to be chosen."""

ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
"""Environment variables that change which CPU kernels oneDNN and ATen dispatch to."""


@dataclass(frozen=True)
class ConvShape:
    """One conv as it runs in training: its hyper-parameters and input shape (N, C, H, W)."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    bias: bool
    input_shape: tuple[int, int, int, int]


@dataclass(frozen=True)
class LayoutChoice:
    """The layout to train in and why. ``nchw_ms``/``channels_last_ms``: probed forward +
    backward time of the model's convs (NaN when not measured)."""

    channels_last: bool
    reason: str
    nchw_ms: float = float("nan")
    channels_last_ms: float = float("nan")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with exactly the strides of the chosen layout (see :func:`with_layout`)."""
        return with_layout(x, self.channels_last)


def with_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` (N, C, H, W) with exactly the strides of NCHW or channels_last, copied if needed.

    ``contiguous()`` is not enough: a tensor with a size-1 dimension (one input channel,
    e.g. grey images permuted from NHWC) is "contiguous" in both layouts, keeps strides
    that PyTorch reads as channels_last, and its convs then run — and train — in
    channels_last whatever the model's layout.
    """
    if x.dim() != 4:
        return x
    _, c, h, w = x.shape
    strides = (h * w * c, 1, w * c, c) if channels_last else (c * h * w, h * w, w, 1)
    if x.stride() == strides:
        return x
    out = torch.empty_strided(x.shape, strides, dtype=x.dtype, device=x.device)
    return out.copy_(x)


def conv_shapes(model: nn.Module, example_input: torch.Tensor) -> tuple[ConvShape, ...]:
    """The 2-d convs ``model(example_input)`` runs, in call order (duplicates kept)."""
    shapes: list[ConvShape] = []

    def hook(module: nn.Conv2d, args: tuple) -> None:
        x = args[0]
        if x.dim() != 4:
            return
        shapes.append(
            ConvShape(
                module.in_channels,
                module.out_channels,
                tuple(module.kernel_size),
                tuple(module.stride),
                tuple(module.padding) if not isinstance(module.padding, str) else (0, 0),
                tuple(module.dilation),
                module.groups,
                module.bias is not None,
                tuple(int(s) for s in x.shape),
            )
        )

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if type(m) is nn.Conv2d]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return tuple(shapes)


def training_layout(
    model: nn.Module, example_input: torch.Tensor, threads: int | None = None
) -> LayoutChoice:
    """The layout to train ``model`` on batches shaped like ``example_input`` (see module
    docstring). ``threads``: torch intra-op threads of training (default: current)."""
    shapes = conv_shapes(model, example_input)
    if not shapes:
        return LayoutChoice(False, "no 2-d convolutions: NCHW")
    threads = threads or torch.get_num_threads()
    env = tuple((k, os.environ.get(k, "")) for k in ISA_VARIABLES)
    return _probe_cached(shapes, threads, env)


@cache
def _probe_cached(
    shapes: tuple[ConvShape, ...], threads: int, env: tuple[tuple[str, str], ...]
) -> LayoutChoice:
    del env  # part of the cache key only: the child inherits os.environ
    return probe_layout(shapes, threads)


def probe_layout(
    shapes: tuple[ConvShape, ...],
    threads: int = 1,
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
) -> LayoutChoice:
    """Run the safety and speed probes in a child process (see module docstring).

    ``env``: extra environment variables for the child (e.g. ``ONEDNN_MAX_CPU_ISA``).
    ``timeout_s``: default ``20 + 0.5·len(shapes)`` seconds; a child still running then is
    killed, and the layout counts as unsafe if it had not finished the safety pass.
    """
    distinct = sorted(set(shapes), key=shapes.index)
    counts = [shapes.count(s) for s in distinct]
    payload = json.dumps(
        {"threads": threads, "shapes": [_shape_dict(s) for s in distinct], "counts": counts}
    )
    timeout_s = timeout_s if timeout_s is not None else 20.0 + 0.5 * len(distinct)
    # glibc's heap checks turn a silent heap corruption into an abort at the next free:
    # without them the AVX2 corruption crashed the probe in 7 of 8 tries, with them 8 of 8
    child_env = {**os.environ, "MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ttmpd._layout"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env,
        text=True,
    )
    timed_out = False
    try:
        stdout, _ = proc.communicate(payload, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        stdout, _ = proc.communicate()
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    phases = {line["phase"]: line for line in lines}
    seconds = time.perf_counter() - start
    # a heap corruption may surface only at a later free, after the safety pass printed:
    # any exit of the child but a clean one or our own timeout kill counts as a failure
    crashed = not timed_out and proc.returncode != 0
    if "safe" not in phases or crashed:
        status = "hung" if timed_out else f"exit code {proc.returncode}"
        choice = LayoutChoice(
            False,
            f"channels_last conv backward failed in the probe ({status}): NCHW",
        )
        logger.warning(
            "training in NCHW: a channels_last training step of this model's convs failed "
            "on this device (%s); see docs/design/avx2-conv-backward.md",
            status,
        )
        return choice
    if "speed" not in phases:
        return LayoutChoice(False, "channels_last is safe but its speed was not measured: NCHW")
    nchw, nhwc = phases["speed"]["nchw_ms"], phases["speed"]["channels_last_ms"]
    faster = nhwc * MIN_SPEEDUP <= nchw
    verdict = "channels_last" if faster else "NCHW"
    logger.info("training layout %s (probe %.1f s)", verdict, seconds)
    return LayoutChoice(
        faster,
        f"probed: NCHW {nchw:.1f} ms, channels_last {nhwc:.1f} ms per step of the convs: {verdict}",
        nchw,
        nhwc,
    )


def _shape_dict(s: ConvShape) -> dict:
    return {
        "in_channels": s.in_channels,
        "out_channels": s.out_channels,
        "kernel": list(s.kernel),
        "stride": list(s.stride),
        "padding": list(s.padding),
        "dilation": list(s.dilation),
        "groups": s.groups,
        "bias": s.bias,
        "input_shape": list(s.input_shape),
    }


def _step_ms(conv: nn.Conv2d, x: torch.Tensor, repeats: int) -> float:
    """Best of ``repeats`` forward + backward times (ms)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        conv(x).sum().backward()
        best = min(best, (time.perf_counter() - start) * 1e3)
    return best


def _child() -> None:  # pragma: no cover - runs in the probe's child process
    request = json.loads(sys.stdin.read())
    torch.set_num_threads(int(request["threads"]))
    torch.manual_seed(0)
    cases = []
    for d in request["shapes"]:
        conv = nn.Conv2d(
            d["in_channels"], d["out_channels"], tuple(d["kernel"]), tuple(d["stride"]),
            tuple(d["padding"]), tuple(d["dilation"]), d["groups"], d["bias"],
        )  # fmt: skip
        x = torch.randn(*d["input_shape"], requires_grad=True)
        cases.append((conv, x))
    layouts = (torch.contiguous_format, torch.channels_last)
    for conv, x in cases:  # safety: channels_last forward + backward, three times
        conv.to(memory_format=torch.channels_last)
        xl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        for _ in range(3):
            conv(xl).sum().backward()
    print(json.dumps({"phase": "safe"}), flush=True)
    totals = dict.fromkeys(layouts, 0.0)
    for (conv, x), count in zip(cases, request["counts"], strict=True):
        for layout in layouts:
            conv.to(memory_format=layout)
            xl = x.detach().contiguous(memory_format=layout).requires_grad_()
            _step_ms(conv, xl, 1)  # warm-up
            totals[layout] += count * _step_ms(conv, xl, 3)
    print(
        json.dumps(
            {
                "phase": "speed",
                "nchw_ms": totals[torch.contiguous_format],
                "channels_last_ms": totals[torch.channels_last],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":  # pragma: no cover
    _child()
