"""Write docs/results.md from the benchmark outputs in benchmarks/results/.

python benchmarks/results_page.py
"""

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, "benchmarks")
from _report import markdown_table

out = [
    "# Results",
    "",
    "Tables generated from `benchmarks/results/*.csv`/`.json` by the benchmarks named;",
    "each section gives date, machine and command. All figures come from a shared 2-core",
    "machine and move by several points from run to run; read them with the noise floor.",
    "",
]
METHODS = [
    "(a) FLOPs-proportional",
    "(b) LUT sum (nearest key)",
    "(c0) ttmpd, uncalibrated",
    "(c) ttmpd",
    "noise floor (pass 2 vs 1)",
]
for path in sorted(Path("benchmarks/results").glob("latency_prediction_heldout_*.json")):
    label = path.stem.removeprefix("latency_prediction_heldout_")
    meta = json.loads(path.read_text())["meta"]
    f = pd.read_csv(path.with_suffix(".csv"))
    f = f[f.method.isin(METHODS)]
    info = pd.read_csv(path.with_name(path.stem + "_info.csv"))
    parts = info["device_rules"].str.split(" | ", regex=False)
    rules = list(dict.fromkeys(x for p in parts for x in p if "overhead" not in x))
    overheads = [x.split(": ")[-1] for p in parts for x in p if "overhead" in x]
    if overheads:
        rules.append("per-call overhead " + ", ".join(overheads) + " (one probe per model)")
    within = f[f.method == "(c) ttmpd"]["within10_pct"]
    out += [
        f"## Latency prediction, held-out architectures, {label}",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}`.",
        "Held-out set: torchvision architectures no default was chosen on (tuning set:",
        "ResNet-18, MobileNetV2, ResNet-56). Random channel-pruned variants (ratios 0-0.8,",
        "unaligned counts), each measured in 3 interleaved passes; 8 calibration prunes.",
        f"Target: >= 95% within ±10%; ttmpd reached it on {int((within >= 95).sum())} of "
        f"{len(within)} models.",
        "",
        "Device rules the probe found: " + "; ".join(rules) + ".",
        *(
            [
                "",
                "Caveat: these ONNX Runtime models were examined while the predictor was",
                "fixed on 2026-11-30 (docs/design/device-rules.md); they are no longer a set",
                "never looked at.",
            ]
            if label.startswith("onnxruntime")
            else []
        ),
        "",
        markdown_table(
            f[["model", "method", "within10_pct", "within5_pct", "mape_pct", "spearman"]]
        ),
        "",
    ]
BASELINE_RUNS = {
    "ttmpd_vs_baselines_heldout": "Shipped ResNet-20",
    "ttmpd_vs_baselines_heldout_torchcpu_seed1": "Shipped ResNet-20 on torch-cpu, seed 1 of 3",
    "ttmpd_vs_baselines_vit_heldout": "Shipped ViT (`vit_mnist`)",
}
for stem, model in BASELINE_RUNS.items():
    baselines = Path(f"benchmarks/results/{stem}_methods.json")
    if not baselines.exists():
        continue
    meta = json.loads(baselines.read_text())["meta"]
    methods = pd.read_csv(baselines.with_suffix(".csv"))
    cells = pd.read_csv(baselines.with_name(f"{stem}_cells.csv"))
    met = int((cells["target_met"] > cells["runs"] / 2).sum())
    longer = [o for o in BASELINE_RUNS if o != stem and o.startswith(stem)]
    figures = sorted(f for f in baselines.parent.glob(f"{stem}_*.png")
                     if not any(f.name.startswith(o) for o in longer))  # fmt: skip
    embedding = ", the embedding width prunable for every method" if meta.get("embedding") else ""
    out += [
        f"## TT-MPD against the baselines, held-out corruptions: {model.split(' ', 1)[1]}",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}`.",
        f"Held-out set: {', '.join(meta['corruptions'])} x seeds "
        f"{', '.join(map(str, meta['seeds']))} (severity {meta['severity']}); the search",
        f"defaults were chosen on motion_blur and impulse_noise, seed 0. {model}{embedding},",
        f"{meta['finetune_samples']} unlabeled images per run, {meta['epochs']} epochs of the",
        f"same fine-tuning for every method; budget rule {meta['budget_rule']} (measured,",
        "3 interleaved passes). Accuracy: mean over runs with the 95% t-interval half-width;",
        "times are medians (wall seconds, prune + fine-tune).",
        "",
        markdown_table(methods),
        "",
        "ttmpd against each run's most accurate in-budget rival: the accuracy difference",
        "(mean, 95% CI half-width), the median ratio of ttmpd's time to reach the rival's",
        "accuracy (within 0.5 pp) over the rival's time, and in how many runs ttmpd meets",
        "the target (ratio <= 0.6, or >= 1 pp better in no more time).",
        f"Cells where it does in most runs: {met} of {len(cells)}.",
        "",
        markdown_table(cells),
        "",
        *(f"![{f.stem}](../benchmarks/results/{f.name})" for f in figures),
        "",
    ]
sweep = Path("benchmarks/results/sweep_executor.json")
if sweep.exists():
    meta = json.loads(sweep.read_text())["meta"]
    frame = pd.read_csv(sweep.with_suffix(".csv"))
    out += [
        "## A sweep on the local executor and on Ray",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}` (from `benchmarks/`).",
        f"Budgets {meta['budgets']} x methods {meta['methods']} plus the original, ONNX Runtime",
        "table. One machine: Ray adds its start-up and worker imports and can only run two",
        "searches at a time on two cores; it pays off with nodes (docs/guide/ray.md).",
        "",
        markdown_table(frame),
        "",
    ]
p = pd.read_csv("benchmarks/results/profiling_speed_end_to_end.csv")
meta = json.loads(Path("benchmarks/results/profiling_speed_end_to_end.json").read_text()).get(
    "meta", {}
)
out += [
    "## Profiling speed (VGG-9 at 32x32 on ONNX Runtime)",
    "",
    f"{meta.get('date')}, {meta.get('machine')}; `{meta.get('command')}`.",
    "",
    markdown_table(
        p[
            [
                "way",
                "grid",
                "planned",
                "wall_s",
                "entries_per_s",
                "unstable_pct",
                "spread_median_pct",
            ]
        ]
    ),
    "",
]
Path("docs/results.md").write_text("\n".join(out))
