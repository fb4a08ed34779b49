"""Do the label-free proxies rank pruned candidates like short fine-tuning does?

Base model: the shipped ResNet-20 trained on the MNIST source split. Test stream: the MNIST
test split under a corruption (default motion_blur, severity 5: the base model keeps
~76% accuracy; fog or contrast push it to chance, where no ranking is possible). 256
random stream samples are the unlabeled calibration/fine-tuning set; the rest (with labels)
measures accuracy.

For >= 30 random candidates (``ttmpd.pruning.random_plan``, overall ratios 0.2-0.7):

* fine-tuned accuracy: a short KD fine-tune (teacher = unpruned model, logits on the
  unlabeled set, T = 4, SGD, 3 epochs) after adaptive BN, then accuracy on the held-out part;
* the signals: (i) combined proxy (``AccuracyModel``, default coefficients), (ii) V1 =
  agreement after adaptive BN, (iii) V2 = KD gap after adaptive BN (negated: lower is
  better), (iv) agreement with stale BN statistics, (v) magnitude (share of the L1 norm of
  the pruned groups' channels that is kept).

Reports Spearman and Kendall rank correlations with the fine-tuned accuracy, and the same
for the combined proxy refitted on 8 candidates (scored on the other candidates).

    python benchmarks/proxy_correlation.py [--candidates 30] [--corruption motion_blur]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from _report import RESULTS, markdown_table, write_results
from scipy.stats import kendalltau, spearmanr

from ttmpd.base import evaluate, reference_checkpoint_path, to_model_input
from ttmpd.data import corrupt, load_mnist
from ttmpd.models import load_checkpoint
from ttmpd.pruning import (
    AccuracyModel,
    agreement_proxies,
    apply_plan,
    channel_groups,
    importance,
    random_plan,
    recalibrate_bn,
)


def fine_tune(model, calib, teacher_logits, epochs: int, seed: int, lr: float = 0.01):
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    t = 4.0
    for _ in range(epochs):
        perm = torch.randperm(len(calib))
        for start in range(0, len(calib), 64):
            idx = perm[start : start + 64]
            logits = model(calib[idx])
            loss = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher_logits[idx] / t, 1),
                            log_target=True, reduction="batchmean") * t * t  # fmt: skip
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--corruption", default="motion_blur")
    parser.add_argument("--severity", type=int, default=5)
    parser.add_argument("--calib-samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(reference_checkpoint_path())
    model, norm = checkpoint.model.eval(), checkpoint.normalization
    test = load_mnist("test")
    images = corrupt(test.images, args.corruption, args.severity, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    pick = np.zeros(len(images), dtype=bool)
    pick[rng.choice(len(images), args.calib_samples, replace=False)] = True
    calib = to_model_input(images[pick], norm)
    held_images, held_labels = images[~pick], test.labels[~pick]
    x = calib[:1]
    with torch.no_grad():
        teacher = model(calib)
    groups = channel_groups(model, x)
    l1 = {g.id: np.asarray(importance("l1")(model, g)) for g in groups if g.prunable}
    base_acc = evaluate(model, held_images, held_labels, norm)
    rows = []
    start = time.perf_counter()
    for i, ratio in enumerate(rng.uniform(0.2, 0.7, args.candidates)):
        plan = random_plan(model, x, groups, float(ratio), seed=args.seed + i)
        pruned = apply_plan(model, x, plan).eval()
        with torch.no_grad():
            stale = float((pruned(calib).argmax(1) == teacher.argmax(1)).float().mean())
        recalibrate_bn(pruned, calib)
        v1, v2 = agreement_proxies(pruned, calib, teacher)
        kept = sum(l1[g][list(plan.keep[g])].sum() for g in plan.keep)
        total = sum(l1[g].sum() for g in plan.keep)
        tuned = fine_tune(pruned, calib, teacher, args.epochs, args.seed + i)
        rows.append({"candidate": i, "ratio": plan.removed_fraction, "v1": v1, "v2": v2,
                     "stale_bn": stale, "magnitude": float(kept / total),
                     "finetuned_acc": evaluate(tuned, held_images, held_labels, norm)})  # fmt: skip
        acc = rows[-1]["finetuned_acc"]
        print(f"candidate {i}: ratio {plan.removed_fraction:.2f} acc {acc:.4f}", file=sys.stderr)
    frame = pd.DataFrame(rows)
    frame["combined"] = AccuracyModel().predict(frame["v1"], frame["v2"])
    y = frame["finetuned_acc"].to_numpy()
    signals = {
        "(i) combined proxy (default coefficients)": frame["combined"],
        "(ii) V1 agreement, adaptive BN": frame["v1"],
        "(iii) V2 KD gap, adaptive BN (negated)": -frame["v2"],
        "(iv) agreement, stale BN": frame["stale_bn"],
        "(v) magnitude kept (L1)": frame["magnitude"],
    }
    fit_idx = np.arange(min(8, len(frame)))
    fitted = AccuracyModel.fit(frame["v1"].iloc[fit_idx], frame["v2"].iloc[fit_idx],
                               y[fit_idx])  # fmt: skip
    rest = np.arange(len(fit_idx), len(frame))
    table = []
    for name, values in signals.items():
        v = np.asarray(values)
        table.append({"signal": name, "spearman": spearmanr(v, y)[0],
                      "kendall": kendalltau(v, y)[0], "n": len(y)})  # fmt: skip
    refit = fitted.predict(frame["v1"].iloc[rest], frame["v2"].iloc[rest])
    table.append({"signal": "(i') combined, refitted on 8 (scored on the rest)",
                  "spearman": spearmanr(refit, y[rest])[0],
                  "kendall": kendalltau(refit, y[rest])[0], "n": len(rest)})  # fmt: skip
    result = pd.DataFrame(table)
    out = RESULTS / "proxy_correlation"
    write_results(out, result, base_accuracy=base_acc, corruption=args.corruption,
                  severity=args.severity, epochs=args.epochs,
                  wall_s=time.perf_counter() - start, fitted=fitted.__dict__)  # fmt: skip
    frame.to_csv(out.with_name("proxy_correlation_candidates.csv"), index=False)
    print(f"base model accuracy on the held-out stream: {base_acc:.4f}; "
          f"fine-tuned candidates: {y.min():.4f}-{y.max():.4f}")  # fmt: skip
    print(markdown_table(result, digits=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
