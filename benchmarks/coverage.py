"""Coverage: the share of each model's measured latency that priced units account for.

For each model (torchvision classification families and timm's ViT-Tiny and DeiT-Tiny, all
built without weights at 224 px, and a 2-layer BERT encoder at 128 tokens) and backend:

1. extract the units with the backend's fusion and profile them at the model's own
   configurations only (``ttmpd profile`` with keep fraction 1 and no off-grid counts: no
   grid), each row the median of 3 interleaved rounds as in any LUT;
2. sum them over the model's units (the uncalibrated LUT sum, ``ttmpd predict --lut T
   --uncalibrated``);
3. measure the whole model end to end in 3 interleaved rounds (``MODEL_TIMING``, the
   median is the measured latency; the rounds' spread is its noise).

``share`` = unit sum / whole (1.0: the units account for all of it; below 1: time in
unpriced ops, framework time between ops, or weights streamed from memory that stay cached
for an isolated unit; above 1: per-call overhead each isolated unit pays that a whole model
pays once). ``share_p10`` is the same with each side's fastest decile (units: their 10th
percentile; whole: the lowest 10th percentile of the rounds), less sensitive to a busy
machine, which preempts a whole model far more often than a microsecond unit;
``share_cpu`` divides the units' fastest decile by the whole model's process CPU time per
call (the time it computed, not the time it waited while preempted). Every op
extraction leaves unpriced is listed with its count. ``load_1min`` records how busy the
shared machine was.

Usage::

    python benchmarks/coverage.py                        # the default models, ONNX Runtime
    python benchmarks/coverage.py --backends onnxruntime openvino --models torchvision:resnet18

Prints a table and writes benchmarks/results/coverage.{csv,json} (rewritten after each
model, so an interrupted run keeps its rows). Own-configuration tables are kept in
``benchmarks/luts/`` and resumed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results
from latency_prediction import example_input
from torch import nn

from ttmpd.errors import TtmpdError
from ttmpd.lut import profile_model
from ttmpd.models import load_model
from ttmpd.profiler import BackendConfig, GridConfig, extract_units, get_backend
from ttmpd.pruning import MODEL_TIMING

IMAGE = (1, 3, 224, 224)
BERT = "hf:bert?num_hidden_layers=2,hidden_size=256,num_attention_heads=4,intermediate_size=1024"
#: (spec, input shape); a rank-2 shape is (batch, tokens) of token ids. Skipped:
#: regnet_y_16gf and larger, vit_l/h (minutes per run on one core).
MODELS: tuple[tuple[str, tuple[int, ...]], ...] = (
    *(
        (f"torchvision:{name}", IMAGE)
        for name in (
            "resnet18",
            "resnet50",
            "resnext50_32x4d",
            "mobilenet_v2",
            "mobilenet_v3_small",
            "mobilenet_v3_large",
            "efficientnet_b0",
            "mnasnet1_0",
            "shufflenet_v2_x1_0",
            "squeezenet1_1",
            "regnet_x_400mf",
            "regnet_y_400mf",
            "densenet121",
            "googlenet",
            "convnext_tiny",
            "swin_t",
            "vit_b_16",
        )
    ),
    ("timm:vit_tiny_patch16_224", IMAGE),
    ("timm:deit_tiny_patch16_224", IMAGE),
    (BERT, (1, 128)),
)
#: the model's own configurations only: every unit as the model has it, nothing else
OWN_CONFIGS = GridConfig(keep_fractions=(1.0,), off_grid_per_unit=0)
ROUNDS = 3
LUTS = Path(__file__).parent / "luts"


def uncovered_counts(uncovered) -> str:
    """``"aten.pad x2, aten.roll x4"``: each unpriced op with its count, sorted by name."""
    counts = Counter(op.aten for op in uncovered)
    return ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))


def cpu_ms_per_call(backend, model: nn.Module, x: torch.Tensor, seconds: float = 0.5) -> float:
    """Process CPU time per call of the whole model, the lowest of ``ROUNDS`` rounds of
    about ``seconds`` each: the time it computed, without the time a busy host preempted it.
    """
    try:
        run = backend._runner(model.eval(), (x,))
    except NotImplementedError:  # a backend that computes its latencies runs nothing
        return float("nan")
    calls = max(1, int(seconds * 1e3 / max(run(1), 1e-3)))
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        run(calls)
        best = min(best, (time.process_time() - start) * 1e3 / calls)
    return best


def coverage_row(model: nn.Module, x: torch.Tensor, backend, table_path: Path) -> dict:
    """Units priced at the model's own configurations against the whole model measured."""
    start = time.perf_counter()
    extraction = extract_units(model, x, backend.fusion)
    table = profile_model(model, x, backend, table_path, grid=OWN_CONFIGS, resume=True,
                          progress=False).table  # fmt: skip
    frame = table.frame.set_index("key")
    by_op: Counter[str] = Counter()
    for unit in extraction.units:
        by_op[unit.config.op] += frame.at[unit.config.key, "latency_ms"]
    fast_sum = sum(frame.at[u.config.key, "p10_ms"] for u in extraction.units)
    timings = [backend.measure_model(model, x, MODEL_TIMING) for _ in range(ROUNDS)]
    rounds = [t.median_ms for t in timings]
    whole = float(np.median(rounds))
    whole_cpu = cpu_ms_per_call(backend, model, x)
    unit_sum = sum(by_op.values())
    top = ", ".join(f"{op} {ms / unit_sum:.2f}" for op, ms in by_op.most_common(3))
    return {
        "units": len(extraction.units),
        "distinct": len({u.config.key for u in extraction.units}),
        "unit_sum_ms": unit_sum,
        "whole_ms": whole,
        "whole_spread_pct": 100 * (max(rounds) - min(rounds)) / whole,
        "share": unit_sum / whole,
        "share_p10": fast_sum / min(t.p10_ms for t in timings),
        "whole_cpu_ms": whole_cpu,
        "share_cpu": fast_sum / whole_cpu,
        "top_ops": top,
        "uncovered_ops": len(extraction.uncovered),
        "uncovered": uncovered_counts(extraction.uncovered),
        "seconds": time.perf_counter() - start,
        "load_1min": os.getloadavg()[0],
        "error": "",
    }


def measure_coverage(spec: str, shape: tuple[int, ...], backend_name: str, threads: int) -> dict:
    """One row of the table: ``spec`` at ``shape`` on ``backend_name``."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    backend = get_backend(backend_name, BackendConfig(threads=threads))
    row: dict = {"model": spec, "input": "x".join(map(str, shape)), "backend": backend_name,
                 "fusion": backend.fusion}  # fmt: skip
    name = spec.split("?")[0].replace(":", "-")
    LUTS.mkdir(exist_ok=True)
    path = LUTS / f"coverage-{name}-{shape[-1]}-{backend_name}.parquet"
    try:
        model = load_model(spec).eval()
        return row | coverage_row(model, example_input(model, shape, seed=0), backend, path)
    except TtmpdError as exc:
        return row | {"error": str(exc).splitlines()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="specs (default: the built-in list)")
    parser.add_argument("--input-shape", help="comma-separated shape for --models")
    parser.add_argument("--backends", nargs="*", default=["onnxruntime"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "coverage")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else IMAGE
    models = [(m, shape) for m in args.models] if args.models else MODELS
    rows = []
    for spec, model_shape in models:
        for name in args.backends:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = measure_coverage(spec, model_shape, name, args.threads)
            print(f"{spec} on {name}: {row.get('share', float('nan')):.2f} priced "
                  f"(load {row.get('load_1min', float('nan')):.1f})", file=sys.stderr)  # fmt: skip
            rows.append(row)
            frame = pd.DataFrame(rows)
            write_results(args.out, frame, threads=args.threads, rounds=ROUNDS)
    columns = ["model", "backend", "units", "unit_sum_ms", "whole_ms", "whole_spread_pct",
               "share", "share_p10", "share_cpu", "uncovered", "load_1min", "error"]  # fmt: skip
    print(markdown_table(frame[[c for c in columns if c in frame]].astype(object).fillna("")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
