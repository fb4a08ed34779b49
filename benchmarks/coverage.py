"""Coverage: the share of each model's measured latency that priced units account for.

For each model (timm ViT/DeiT/ConvNeXt/Swin and torchvision models built without weights
at small inputs, and a BERT-style encoder built in code) and backend: extract the units with
the backend's fusion, measure each distinct unit alone, and compare their sum with the
whole model measured end to end (each side the fastest decile of its samples, minimum over
2-3 interleaved measurements; ``load_1min`` records how busy the machine was).
``share`` = Σ units / whole (1.0: the units account for all of it; below 1: time in
unpriced ops, framework time between ops, or weights streamed from memory that stay cached
for an isolated unit; above 1: per-call overhead each isolated unit pays that a whole
model pays once). Every uncovered op is
listed with its count.

Usage::

    python benchmarks/coverage.py                              # the default models
    python benchmarks/coverage.py --backends torch-cpu --models timm:vit_tiny_patch16_224

Prints a table and writes benchmarks/results/coverage.{csv,json}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results
from torch import nn

from ttmpd.errors import TtmpdError
from ttmpd.models import load_model
from ttmpd.profiler import BackendConfig, TimingConfig, extract_units, get_backend

#: (spec, input shape): the timm tiny ViTs at their 224 px, the rest smaller so that a model
#: takes seconds per backend on one core.
MODELS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("timm:vit_tiny_patch16_224", (1, 3, 224, 224)),
    ("timm:deit_tiny_patch16_224", (1, 3, 224, 224)),
    ("timm:deit_tiny_distilled_patch16_224", (1, 3, 224, 224)),
    ("timm:vit_small_patch16_224?img_size=112,global_pool=avg,class_token=False", (1, 3, 112, 112)),
    ("timm:convnext_atto?conv_mlp=False", (1, 3, 128, 128)),
    ("timm:swin_tiny_patch4_window7_224?img_size=112", (1, 3, 112, 112)),
    ("torchvision:vit_b_16?image_size=64", (1, 3, 64, 64)),
    ("torchvision:resnet18", (1, 3, 112, 112)),
    ("torchvision:mobilenet_v3_small", (1, 3, 112, 112)),
    ("torchvision:efficientnet_b0", (1, 3, 112, 112)),
    ("torchvision:shufflenet_v2_x0_5", (1, 3, 112, 112)),
    ("bert:2x64", (1, 64)),
    ("bert:2x128", (1, 128)),
)
BACKENDS = ("torch-cpu", "onnxruntime")
QUICK = TimingConfig(min_samples=5, max_seconds=0.2)
ROUNDS = 2


class BertEncoder(nn.Module):
    """A BERT-style encoder: token embedding, learned positions, layer norm, post-norm
    ``nn.TransformerEncoder`` layers (GELU MLP), mean pooling."""

    def __init__(self, layers: int = 2, tokens: int = 128, dim: int = 256, heads: int = 4):
        super().__init__()
        self.embed = nn.Embedding(30522, dim)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.norm(self.embed(ids) + self.pos)).mean(dim=1)


def _build(spec: str, shape: tuple[int, ...]) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if spec.startswith("bert:"):
        layers, tokens = (int(v) for v in spec.removeprefix("bert:").split("x"))
        return BertEncoder(layers, tokens).eval(), torch.randint(0, 30522, shape)
    return load_model(spec).eval(), torch.randn(*shape)


def measure_coverage(spec: str, shape: tuple[int, ...], backend_name: str, threads: int) -> dict:
    """One row: units, their summed and the whole model's measured latency, uncovered ops."""
    backend = get_backend(backend_name, BackendConfig(threads=threads))
    model, x = _build(spec, shape)
    row: dict = {"model": spec, "backend": backend_name, "fusion": backend.fusion}
    start = time.perf_counter()
    extraction = extract_units(model, x, backend.fusion)
    distinct = {u.config.key: u.config for u in extraction.units}
    try:
        unit_ms = {
            key: backend.measure(config, QUICK).median_ms for key, config in distinct.items()
        }
        whole_ms = min(backend.measure_model(model, x).median_ms for _ in range(2))
    except TtmpdError as exc:
        return row | {"error": str(exc).splitlines()[0]}
    by_op: Counter[str] = Counter()
    for u in extraction.units:
        by_op[u.config.op] += unit_ms[u.config.key]
    unit_sum = sum(by_op.values())
    uncovered = Counter(op.aten for op in extraction.uncovered)
    attention = sum(by_op[op] for op in ("sdpa", "matmul", "softmax"))
    return row | {
        "units": len(extraction.units),
        "distinct": len(distinct),
        "unit_sum_ms": unit_sum,
        "whole_ms": whole_ms,
        "share": unit_sum / whole_ms,
        "attention_share": attention / unit_sum if unit_sum else 0.0,
        "uncovered_ops": sum(uncovered.values()),
        "uncovered": ", ".join(f"{op} x{n}" for op, n in sorted(uncovered.items())),
        "seconds": time.perf_counter() - start,
        "load_1min": os.getloadavg()[0],
        "error": "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="specs (default: the built-in list)")
    parser.add_argument("--input-shape", help="comma-separated shape for --models")
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "coverage")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    models = [(m, shape or (1, 3, 224, 224)) for m in args.models] if args.models else MODELS
    rows = []
    for spec, model_shape in models:
        for name in args.backends:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = measure_coverage(spec, model_shape, name, args.threads)
            print(f"{spec} on {name}: {row.get('share', float('nan')):.2f} priced", file=sys.stderr)
            rows.append(row)
    frame = pd.DataFrame(rows)
    write_results(args.out, frame, threads=args.threads)
    columns = ["model", "backend", "units", "share", "attention_share", "uncovered", "error"]
    print(markdown_table(frame[[c for c in columns if c in frame]].astype(object).fillna("")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
