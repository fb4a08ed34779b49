"""Accuracy recovered by each distillation loss (and scheme) on the embedded scenario.

In the spirit of RepDistiller's CIFAR-100 table (Tian et al., ICLR 2020): one pruned
student, one teacher, the same step budget for every row. Scenario as in
``distill_cache.py``: the shipped ResNet-20 (MNIST) teacher, the MNIST test stream under motion
blur severity 5, the student pruned ~``--ratio`` (random_plan, seed 0), 512 unlabeled stream
images for fine-tuning (random, seed 0), the held-out 3,488 labeled images for evaluation.
The teacher runs once: every row reuses one cache of logits and layer1-3 features.

Rows: ``ce`` (teacher pseudo labels only), ``kd`` (``kd:0.9,ce:0.1``), ``dkd``, and each
feature loss with pseudo-label CE (``ce:1,<loss>:<default weight>``, RepDistiller's
``-r 1 -b beta`` setting with pseudo labels for ground truth); then the schemes byot, dml
and adversarial with ``kd:0.9,ce:0.1``. Same optimiser (SGD 0.01, momentum 0.9, cosine),
batch 64, ``--epochs`` epochs over the subset, seed 0. A row whose loss becomes non-finite
is reported as diverged.

    python benchmarks/distill_losses.py [--epochs 10] [--threads 2]

Writes benchmarks/results/distill_losses.{csv,json}.
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results
from distill_cache import CORRUPTION, SEVERITY, scenario

from ttmpd.distill import (
    LOSSES,
    CacheConfig,
    DistillConfig,
    SelectionConfig,
    TeacherCache,
    accuracy,
    distill,
    held_out,
)
from ttmpd.errors import InputError

LAYERS = ("layer1", "layer2", "layer3")
LOGIT_ROWS = {"ce": "ce:1", "kd": "kd:0.9,ce:0.1", "dkd": "dkd:1,ce:1"}
SCHEMES = ("byot", "dml", "adversarial")


def rows_to_run() -> list[tuple[str, str, str]]:
    """``(row name, loss spec, scheme)``."""
    rows = [(name, spec, "standard") for name, spec in LOGIT_ROWS.items()]
    for name in LOSSES.names():
        if name in LOGIT_ROWS:
            continue
        rows.append((name, f"ce:1,{name}:{LOSSES.get(name).default_weight:g}", "standard"))
    rows += [(f"kd + {s}", LOGIT_ROWS["kd"], s) for s in SCHEMES]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="base checkpoint (default: the shipped ResNet-20)")
    parser.add_argument("--corruption", default=CORRUPTION)
    parser.add_argument("--severity", type=int, default=SEVERITY)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--subset", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", help="comma-separated row names (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher, student, images, labels, to_input = scenario(
        args.teacher, args.corruption, args.severity, ratio=args.ratio
    )
    cache = TeacherCache.build(
        teacher,
        images,
        to_input,
        layers=LAYERS,
        selection=SelectionConfig("random", size=args.subset, seed=0),
        config=CacheConfig(),
    )
    rest = held_out(len(images), cache.indices)
    eval_images, eval_labels = images[rest], labels[rest]
    teacher_acc = accuracy(teacher, eval_images, eval_labels, to_input)
    before = accuracy(student, eval_images, eval_labels, to_input)
    print(f"teacher {teacher_acc * 100:.2f}%, pruned student {before * 100:.2f}% (held-out)")
    only = set(args.only.split(",")) if args.only else None
    rows = []
    for name, spec, scheme in rows_to_run():
        if only and name not in only:
            continue
        config = DistillConfig(
            loss=spec,
            scheme=scheme,
            feature_layers=LAYERS,
            epochs=args.epochs,
            lr=args.lr,
            seed=0,
            progress=False,
        )
        start = time.perf_counter()
        try:
            result = distill(teacher, copy.deepcopy(student), cache, to_input, config)
            after = accuracy(result.student, eval_images, eval_labels, to_input)
            status = "ok"
        except InputError as exc:
            after, status = float("nan"), f"diverged ({exc})"[:60]
        seconds = time.perf_counter() - start
        rows.append(
            {
                "loss": name,
                "spec": spec,
                "scheme": scheme,
                "acc_before_pct": before * 100,
                "acc_after_pct": after * 100,
                "recovered_pp": (after - before) * 100,
                "gap_to_teacher_pp": (teacher_acc - after) * 100,
                "time_s": seconds,
                "status": status,
            }
        )
        print(f"  {name:18s} {after * 100:6.2f}%  {seconds:5.1f} s  {status}", flush=True)
    frame = pd.DataFrame(rows)
    print(markdown_table(frame.drop(columns=["spec"])))
    write_results(
        RESULTS / "distill_losses",
        frame,
        threads=args.threads,
        epochs=args.epochs,
        ratio=args.ratio,
        subset=args.subset,
        lr=args.lr,
        teacher_accuracy_pct=teacher_acc * 100,
        cache_teacher_forwards=cache.teacher_forwards,
        steps=args.epochs * math.ceil(cache.num_samples / config.batch_size),
        scenario=f"MNIST test stream, {args.corruption} severity {args.severity}, seed 0; "
        "ResNet-20 pruned "
        f"~{args.ratio:.0%} (random_plan seed 0); subset 512 random, held-out rest evaluated",
    )


if __name__ == "__main__":
    main()
