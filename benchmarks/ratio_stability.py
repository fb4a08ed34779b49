"""How repeatable is a pruned model's measured fraction of the original? Blocked vs paired.

Every budget decision rests on ``ratio = pruned_ms / original_ms``, measured on the user's
device, often a shared one whose speed drifts over seconds. Two ways to measure it,
compared side by side in one run on the same models:

=========== ===============================================================================
method      measurement
=========== ===============================================================================
blocked     each model timed in its own block (``measure_models``: 3 interleaved rounds,
            the median round of each model); the ratio of the two medians
paired      ``measure_beside``: 3 paired measurements, each alternating one sample of the
            original and one of the prune and taking the median per-pair ratio; the
            median of the 3
=========== ===============================================================================

Models: the shipped ResNet-20 (MNIST input, batch 1) and ``--prunes`` random prunes of it
(overall ratios 0.3 and 0.6, seeded, unaligned). Per backend (1 thread) and prune, both
methods measure the ratio ``--repeats`` times, alternating methods, so both see the same
host. Reported per method: the median ratio, the relative spread of the repeats
``(max − min) / median`` and their IQR over the median (the noise a budget check meets),
and the median wall seconds per measurement. No target is asserted here; the spread of
``blocked`` is the noise floor the paired method is measured against.

    python benchmarks/ratio_stability.py [--backends torch-cpu,onnxruntime] [--repeats 8]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import pandas as pd
from _report import RESULTS, markdown_table, write_results

from ttmpd.base import reference_checkpoint_path, to_model_input
from ttmpd.data import load_mnist
from ttmpd.models import load_checkpoint
from ttmpd.profiler import BackendConfig, get_backend
from ttmpd.pruning import (
    MEASURE_ROUNDS,
    apply_plan,
    channel_groups,
    measure_beside,
    measure_models,
    random_plan,
)

PRUNE_RATIOS = (0.3, 0.6)


def blocked(original, model, x, backend) -> float:
    original_ms, model_ms = measure_models([(original, x), (model, x)], backend, rounds=3)
    return model_ms / original_ms


def paired(original, model, x, backend, rounds: int = MEASURE_ROUNDS) -> float:
    original_ms, model_ms = measure_beside(original, model, x, backend, rounds=rounds)
    return model_ms / original_ms


METHODS = {"blocked": blocked, "paired": paired, "paired-1": partial(paired, rounds=1)}


def run_backend(backend_name: str, repeats: int) -> list[dict]:
    checkpoint = load_checkpoint(reference_checkpoint_path().with_name("resnet20_mnist.pt"))
    model, norm = checkpoint.model.eval(), checkpoint.normalization
    x = to_model_input(load_mnist("test").images[:1], norm)
    backend = get_backend(backend_name, BackendConfig(threads=1))
    groups = channel_groups(model, x)
    rows = []
    for i, prune_ratio in enumerate(PRUNE_RATIOS):
        plan = random_plan(model, x, groups, prune_ratio, seed=100 + i)
        pruned = apply_plan(model, x, plan).eval()
        for repeat in range(repeats):
            order = list(METHODS)[repeat % len(METHODS) :] + list(METHODS)[: repeat % len(METHODS)]
            for method in order:
                start = time.perf_counter()
                ratio = METHODS[method](model, pruned, x, backend)
                rows.append({"backend": backend_name, "prune_ratio": prune_ratio,
                             "method": method, "repeat": repeat, "ratio": ratio,
                             "wall_s": time.perf_counter() - start})  # fmt: skip
    return rows


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    out = []
    keys = ["backend", "prune_ratio", "method"]
    for (backend, prune_ratio, method), group in frame.groupby(keys, sort=False):
        r = group["ratio"]
        med = float(r.median())
        q1, q3 = np.percentile(r, [25, 75])
        out.append({"backend": backend, "prune_ratio": prune_ratio, "method": method,
                    "repeats": len(r), "median_ratio": med,
                    "spread_pct": 100 * float(r.max() - r.min()) / med,
                    "iqr_pct": 100 * float(q3 - q1) / med,
                    "median_wall_s": float(group["wall_s"].median())})  # fmt: skip
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch-cpu,onnxruntime")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--name", default="ratio_stability")
    args = parser.parse_args(argv)
    rows = [r for b in args.backends.split(",") for r in run_backend(b, args.repeats)]
    frame = pd.DataFrame(rows)
    summary = summarise(frame)
    print(markdown_table(summary))
    write_results(RESULTS / args.name, frame, summary=summary.to_dict("records"),
                  repeats=args.repeats, prune_ratios=list(PRUNE_RATIOS))  # fmt: skip


if __name__ == "__main__":
    main()
