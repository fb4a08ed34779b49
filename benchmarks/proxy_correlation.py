"""Do the label-free proxies rank pruned candidates like the product's fine-tuning does?

Base model: the shipped ResNet-20 trained on the MNIST source split. Test streams: the MNIST
test split under each corruption at severity 5 (motion blur keeps ~76% accuracy, rotate
~62%; fog or contrast push it to chance, where no ranking is possible). As in ``ttmpd run``,
512 seeded random stream images are the unlabeled fine-tuning set and the proxies use the
first 128 of them; the rest (with labels) measures accuracy.

For ``--candidates`` random candidates per stream (``ttmpd.pruning.random_plan``, overall
ratios 0.2-0.7, per-group ratios random):

* fine-tuned accuracy: the fine-tuning ``ttmpd run`` applies to its result (distillation
  ``kd:0.9,ce:0.1`` on cached pseudo labels, 10 epochs over the 512 images, SGD lr 0.01,
  cosine), run twice with training seeds 0 and 1; the target is the mean of the two, and the
  rank correlation between the two runs is the noise ceiling no proxy can be expected to pass;
* the signals: (i) the combined proxy (``AccuracyModel`` with its default coefficients),
  (ii) V1 = agreement after adaptive BN, (iii) V2 = KD gap after adaptive BN (negated: lower
  is better), (iv) agreement with stale BN statistics, (v) magnitude: the share of the L1
  importance mass kept (the ``kept`` input of the combined proxy).

The combined proxy's form and defaults were chosen on seeds 0 and 1 (motion blur) and seed 0
(impulse noise); the default ``--seed 2`` draws other candidates and another data split, and
rotate was never looked at. Also reported: the combined proxy refitted (``AccuracyModel.fit``)
on the first 8 candidates and scored on the rest. Candidates are appended to a
``.partial.csv`` as they finish; a re-run skips those already there.

    python benchmarks/proxy_correlation.py [--candidates 40] [--corruptions motion_blur,rotate]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from functools import partial

import numpy as np
import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results
from scipy.stats import kendalltau, spearmanr

from ttmpd.base import reference_checkpoint_path, to_model_input
from ttmpd.data import corrupt, load_mnist
from ttmpd.models import load_checkpoint
from ttmpd.pipeline import RunConfig, distill_student
from ttmpd.pruning import (
    AccuracyModel,
    adapt_bn,
    agreement_proxies,
    apply_plan,
    channel_groups,
    importance,
    random_plan,
)
from ttmpd.workflow import split_mask

FINETUNE_SEEDS = (0, 1)
KEY = ["corruption", "seed", "candidate"]


def accuracy(model, images, labels, to_input) -> float:
    with torch.no_grad():
        logits = torch.cat([model(b) for b in to_input(images).split(512)])
    return float((logits.argmax(1).numpy() == labels).mean())


def candidates(args, corruption: str, done: set, partial_csv) -> None:
    """Measure the missing candidates of one stream, appending each row to ``partial_csv``."""
    checkpoint = load_checkpoint(reference_checkpoint_path())
    model, norm = checkpoint.model.eval(), checkpoint.normalization
    test = load_mnist("test")
    images = corrupt(test.images, corruption, args.severity, seed=args.seed)
    pick = split_mask(len(images), args.finetune_samples, args.seed)
    tune, held, labels = images[pick], images[~pick], test.labels[~pick]
    to_input = partial(to_model_input, normalization=norm)
    calib = to_input(tune[: args.proxy_samples])
    x = calib[:1]
    with torch.no_grad():
        teacher = model(calib)
    groups = channel_groups(model, x)
    l1 = {g.id: np.clip(importance("l1")(model, g), 0, None) for g in groups if g.prunable}
    total = sum(float(v.sum()) for v in l1.values())
    base_acc = accuracy(model, held, labels, to_input)
    rng = np.random.default_rng(args.seed)
    for i, ratio in enumerate(rng.uniform(0.2, 0.7, args.candidates)):
        if (corruption, args.seed, i) in done:
            continue
        start = time.perf_counter()
        plan = random_plan(model, x, groups, float(ratio), seed=args.seed + i)
        pruned = apply_plan(model, x, plan).eval()
        with torch.no_grad():
            stale = float((pruned(calib).argmax(1) == teacher.argmax(1)).float().mean())
        adapt_bn(pruned, calib)
        v1, v2 = agreement_proxies(pruned, calib, teacher)
        kept = sum(float(l1[g][list(plan.keep[g])].sum()) for g in plan.keep) / total
        row = {"corruption": corruption, "seed": args.seed, "candidate": i,
               "ratio": plan.removed_fraction, "base_acc": base_acc, "v1": v1, "v2": v2,
               "stale_bn": stale, "magnitude": kept}  # fmt: skip
        for s in FINETUNE_SEEDS:
            config = RunConfig(model="-", data="-", seed=s, progress=False).distill_config()
            student, _ = distill_student(model, copy.deepcopy(pruned), tune, to_input, config)
            row[f"finetuned_acc_{s}"] = accuracy(student, held, labels, to_input)
        row["wall_s"] = time.perf_counter() - start
        pd.DataFrame([row]).to_csv(partial_csv, mode="a", index=False,
                                   header=not partial_csv.exists())  # fmt: skip
        print(f"{corruption} candidate {i}: ratio {row['ratio']:.2f} v1 {v1:.3f} v2 {v2:.2f} "
              f"kept {kept:.3f} acc {row['finetuned_acc_0']:.4f} / {row['finetuned_acc_1']:.4f}",
              file=sys.stderr)  # fmt: skip


def correlations(frame: pd.DataFrame) -> list[dict]:
    """Rank correlations of every signal with the mean fine-tuned accuracy of one stream."""
    runs = [frame[f"finetuned_acc_{s}"].to_numpy() for s in FINETUNE_SEEDS]
    y = np.mean(runs, axis=0)
    combined = AccuracyModel().predict(frame["v1"], frame["v2"], frame["magnitude"])
    signals = {
        "(i) combined proxy (default coefficients)": combined,
        "(ii) V1 agreement, adaptive BN": frame["v1"],
        "(iii) V2 KD gap, adaptive BN (negated)": -frame["v2"],
        "(iv) agreement, stale BN": frame["stale_bn"],
        "(v) magnitude kept (L1)": frame["magnitude"],
    }
    rows = [{"signal": name, "spearman": spearmanr(v, y)[0], "kendall": kendalltau(v, y)[0],
             "n": len(y)} for name, v in signals.items()]  # fmt: skip
    fit, rest = frame.iloc[:8], frame.iloc[8:]
    fitted = AccuracyModel.fit(fit["v1"], fit["v2"], y[:8], fit["magnitude"])
    refit = fitted.predict(rest["v1"], rest["v2"], rest["magnitude"])
    rows.append({"signal": "(i') combined, refitted on 8 (scored on the rest)",
                 "spearman": spearmanr(refit, y[8:])[0],
                 "kendall": kendalltau(refit, y[8:])[0], "n": len(rest)})  # fmt: skip
    rows.append({"signal": "noise ceiling: fine-tune seed 0 vs seed 1",
                 "spearman": spearmanr(*runs)[0], "kendall": kendalltau(*runs)[0],
                 "n": len(y)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--corruptions", default="motion_blur,rotate")
    parser.add_argument("--severity", type=int, default=5)
    parser.add_argument("--finetune-samples", type=int, default=512)
    parser.add_argument("--proxy-samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    if args.candidates < 12:
        parser.error("--candidates must be >= 12 (8 fit the refitted proxy, the rest score it)")
    torch.set_num_threads(1)
    partial_csv = RESULTS / "proxy_correlation_candidates.partial.csv"
    done = set()
    if partial_csv.exists():
        done = set(map(tuple, pd.read_csv(partial_csv)[KEY].itertuples(index=False)))
    start = time.perf_counter()
    corruptions = args.corruptions.split(",")
    for corruption in corruptions:
        candidates(args, corruption, done, partial_csv)
    frame = pd.read_csv(partial_csv)
    frame = frame[frame["corruption"].isin(corruptions) & (frame["seed"] == args.seed)
                  & (frame["candidate"] < args.candidates)]  # fmt: skip
    table = []
    for corruption in corruptions:
        stream = frame[frame["corruption"] == corruption].sort_values("candidate")
        table += [{"corruption": corruption, **row} for row in correlations(stream)]
    result = pd.DataFrame(table)
    out = RESULTS / "proxy_correlation"
    write_results(out, result, severity=args.severity, seed=args.seed,
                  finetune_samples=args.finetune_samples, proxy_samples=args.proxy_samples,
                  finetune="RunConfig().distill_config(), seeds 0 and 1",
                  wall_s=time.perf_counter() - start,
                  accuracy_model=AccuracyModel().__dict__)  # fmt: skip
    frame.to_csv(out.with_name("proxy_correlation_candidates.csv"), index=False)
    for corruption, stream in frame.groupby("corruption"):
        acc = stream[[f"finetuned_acc_{s}" for s in FINETUNE_SEEDS]].mean(axis=1)
        print(f"{corruption}: base model {stream['base_acc'].iloc[0]:.4f}, fine-tuned "
              f"candidates {acc.min():.4f}-{acc.max():.4f}")  # fmt: skip
    print(markdown_table(result, digits=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
