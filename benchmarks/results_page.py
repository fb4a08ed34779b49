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
    "(c) ttmpd, reorders unpriced",  # runs since 2026-12-02, where the probe timed reorders
    "(c) ttmpd, reorders per unit",  # runs since the graph count became the default
    "(c) ttmpd, streaming unpriced",  # the held-out-3 run, when (c) priced it ("auto")
    "(c) ttmpd, streaming auto",  # runs since streaming pricing became opt-in
    "(c) ttmpd, streaming fitted",  # runs since memory_pricing="fit" (2026-12-03)
    "(c) ttmpd, weights in a model unpriced",  # runs since weight_pricing (2026-12-04)
    "(c) ttmpd, streaming charged alone too",  # runs since memory_alone (2026-12-04)
    "noise floor (pass 2 vs 1)",
    "noise floor (fresh process vs this one)",  # runs since 2026-12-01
    "noise floor (profiling process vs fresh)",  # runs measured in a fresh process
]


def wilson(share_pct: float, n: int, z: float = 1.96) -> str:
    """95% Wilson interval of a share (in %) observed on ``n`` samples, as ``"lo-hi"``."""
    p = share_pct / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return f"{100 * max(0.0, centre - half):.0f}-{100 * min(1.0, centre + half):.0f}"


HELD_OUT_SETS = {  # result-file prefix -> (section title, what the set is)
    "latency_prediction_heldout_": (
        "held-out architectures",
        [
            "Held-out set: torchvision architectures no default was chosen on (tuning set:",
            "ResNet-18, MobileNetV2, ResNet-56).",
        ],
    ),
    "latency_prediction_heldout2_": (
        "second held-out set",
        [
            "Second held-out set: torchvision architectures nobody had run through ttmpd",
            "before 2026-12-02, chosen before any was measured (tuning set: ResNet-18,",
            "MobileNetV2, ResNet-56; the first held-out set had been examined by then).",
        ],
    ),
    "latency_prediction_heldout3_": (
        "third held-out set",
        [
            "Third held-out set: RegNetY-400MF, MNASNet 1.0 and ResNet-50, chosen on",
            "2026-12-02 before any was measured pruned, after the weight streaming cost was",
            "designed on the second set (which is no longer blind for it). In this run (c)",
            "priced weight streaming (memory_pricing='auto', then the default); the row",
            "'streaming unpriced' is the default since, after this run.",
        ],
    ),
    "latency_prediction_heldout4_": (
        "fourth held-out set",
        [
            "Fourth held-out set: RegNetX-800MF, ResNet-34 and ShuffleNetV2 x1.5, chosen on",
            "2026-12-03 before any was measured, after the calibration's streaming scale",
            "(memory_pricing='fit', the row 'streaming fitted') was written on what the",
            "third set showed.",
        ],
    ),
    "latency_prediction_heldout5_": (
        "fifth held-out set",
        [
            "Fifth held-out set: SqueezeNet 1.0, ShuffleNetV2 x1.0, MNASNet 0.75 and",
            "MobileNetV3-large at 32 px, chosen on 2026-12-03 at 21:07 before any was",
            "measured, after the weight streaming's ramp shape (designed on the Intel host's",
            "probe and the first held-out set's misses there) and before OpenVINO's isolation",
            "cost (designed on the tuning set's ResNet-56) was written.",
        ],
    ),
    "latency_prediction_heldout6_": (
        "sixth held-out set",
        [
            "Sixth held-out set: EfficientNet-B1, RegNetY-800MF, MNASNet 1.3 and ShuffleNetV2",
            "x2.0 at 32 px, chosen on 2026-12-04 at 01:31 before any was measured, after the",
            "calibration's weight column (what weights cost in a model beyond alone) was",
            "designed on the tuning set and the fifth set.",
        ],
    ),
    "latency_prediction_heldout7_": (
        "seventh held-out set",
        [
            "Seventh held-out set: EfficientNet-B2, RegNetY-1.6GF and RegNetX-1.6GF at 32 px,",
            "chosen on 2026-12-04 at 06:57 before any was measured, after the streaming charge",
            "less what a unit paid alone was designed on the tuning set and the fifth and sixth",
            "sets.",
        ],
    ),
    "latency_prediction_tuned_": (
        "tuning set (not held out)",
        [
            "The tuning set (ResNet-18 and MobileNetV2 at 224 px, ResNet-56 at 32 px), where",
            "defaults are chosen: these figures are not a test of them.",
        ],
    ),
}
#: what the rows of one run meant when it ran, where the defaults moved after it
RUN_NOTES = {
    "latency_prediction_tuned_intel_openvino": [
        "The Intel host, OpenVINO, the first run of the tuning set on this backend. (c)",
        "prices weight streaming with the probed ramp (the default since this run); 'streaming",
        "share (1 - C/F)' refits the same probe as the hyperbolic share of before. Run before",
        "OpenVINO's isolation cost existed (its effect, refitted offline on these",
        "measurements, is in docs/design/device-rules.md).",
    ],
    "latency_prediction_heldout5_intel_onnxruntime": [
        "The Intel host, ONNX Runtime, run blind after the OpenVINO run of the same set: (c)",
        "is the default (ramp streaming, fitted scale); 'streaming share (1 - C/F)' is the",
        "fit with the earlier share.",
    ],
    "latency_prediction_heldout5_intel_openvino": [
        "The Intel host, OpenVINO, run blind: (c) is the default (ramp streaming, fitted",
        "scale, isolation cost priced); 'streaming share (1 - C/F)' and 'isolation unpriced'",
        "are the fits without each change.",
    ],
    "latency_prediction_heldout6_intel_openvino": [
        "The Intel host, OpenVINO, run blind: (c) is the default (weights in a model priced,",
        "ramp streaming with a fitted scale, isolation cost priced); 'weights in a model",
        "unpriced' is the calibration before 2026-12-04.",
    ],
    "latency_prediction_heldout6_intel_onnxruntime": [
        "The Intel host, ONNX Runtime, run blind after the OpenVINO run of the same set: (c)",
        "is the default; 'weights in a model unpriced' is the calibration before 2026-12-04.",
    ],
    "latency_prediction_heldout7_intel_onnxruntime": [
        "The Intel host, ONNX Runtime, run blind on one model of the set (EfficientNet-B2;",
        "time allowed one): (c) is the default; 'streaming charged alone too' is the charge",
        "before 2026-12-04.",
    ],
    "latency_prediction_heldout7_intel_onnxruntime_rest": [
        "The Intel host, ONNX Runtime, run blind on the set's other two models (RegNetY-1.6GF",
        "and RegNetX-1.6GF) in the next session, with the same code as the EfficientNet-B2",
        "run above: (c) is the default; 'streaming charged alone too' is the old charge.",
    ],
    "latency_prediction_heldout7_intel_openvino": [
        "The Intel host, OpenVINO, run blind on the whole set after the ONNX Runtime runs,",
        "with the same code: (c) is the default; 'streaming charged alone too' is the charge",
        "before 2026-12-04.",
    ],
    "latency_prediction_heldout_intel_torch-cpu": [
        "Another host: an Intel Xeon with AMX (L3 480 MiB), where every other run on this",
        "page ran on an AMD EPYC. No rule, default or threshold was chosen on this host; the",
        "models are the first held-out set's (examined on the EPYC host, not here).",
    ],
    "latency_prediction_heldout_intel_onnxruntime": [
        "Another host: an Intel Xeon with AMX (L3 480 MiB), where every other run on this",
        "page ran on an AMD EPYC. No rule, default or threshold was chosen on this host. Two",
        "of the first held-out set's models (time allowed two); on the EPYC host they were",
        "examined while ONNX Runtime's rules were fixed, so only the host is new.",
    ],
    "latency_prediction_heldout_intel_onnxruntime_rest": [
        "Another host: the Intel Xeon with AMX, nothing tuned there. The other two of the",
        "first held-out set's models on ONNX Runtime, run alone after the two above; their",
        "tables, probes and calibrations were all built on this host.",
    ],
    "latency_prediction_heldout_intel_openvino": [
        "Another host: the Intel Xeon with AMX, nothing tuned there. OpenVINO on the first",
        "held-out set. The EPYC runs of these models on OpenVINO (2026-12-01) predate the",
        "fitted weight-streaming term, chosen on other sets since.",
    ],
    "latency_prediction_heldout_intel_openvino_avx2": [
        "The Intel host with OpenVINO's oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2,",
        "ATEN_CPU_CAPABILITY=avx2): another host's kernels, emulated. Two of the four models,",
        "as time allowed; tables, probes and calibrations built under the limit.",
    ],
    "latency_prediction_heldout4_onnxruntime": [
        "In this run (c) was the default of then, streaming unpriced; the row 'streaming",
        "fitted' is the default since, after this run (it reached the target on 1 of 3",
        "models, ShuffleNetV2 x1.5 at 96%).",
    ],
    "latency_prediction_heldout4_openvino": [
        "Run blind after the default moved: (c) is the default, streaming fitted; the row",
        "'streaming unpriced' is the fit without the term. Neither was tried on OpenVINO",
        "before this run.",
    ],
    "latency_prediction_heldout4_fresh": [
        "RegNetX-800MF of this set again, after its ONNX Runtime and OpenVINO runs below,",
        "with the calibration and test prunes measured in a fresh process (--measure-in",
        "fresh); the same LUTs, predictor and prunes. Not blind: both were measured before.",
    ],
    "latency_prediction_heldout4_processes_regnet_x_800mf": [
        "RegNetX-800MF of this set again (not blind), the first 12 of its 24 prunes, on the",
        "ONNX Runtime LUT above, measured in 5 fresh processes to see how far one process's",
        "reading strays from the others'.",
    ],
    "latency_prediction_heldout4_processes_resnet34": [
        "ResNet-34 of this set again (not blind), the first 12 of its 24 prunes, on the",
        "ONNX Runtime LUT above, measured in 5 fresh processes, the second half of the plan",
        "beside RegNetX-800MF. Run alone on the host.",
    ],
    "latency_prediction_heldout4_calibrate3_resnet34": [
        "ResNet-34 again (not blind), the same 12 prunes, measured in 6 fresh processes:",
        "the first 3 calibrate one more fit on the median of their readings ('calibrated on",
        "3 processes'), the truth is the median of the other 3 for every row. Alone on the",
        "host.",
    ],
    "latency_prediction_heldout4_torch-cpu": [
        "Run blind after the default moved and after --measure-in fresh became the",
        "default: (c) is the default, streaming fitted; the row 'streaming unpriced' is the",
        "fit without the term. Neither was tried on torch-cpu before this run.",
    ],
}
runs = [
    (prefix, path)
    for prefix in HELD_OUT_SETS
    for path in sorted(Path("benchmarks/results").glob(f"{prefix}*.json"))
]
for prefix, path in runs:
    label = path.stem.removeprefix(prefix)
    title, described = HELD_OUT_SETS[prefix]
    meta = json.loads(path.read_text())["meta"]
    f = pd.read_csv(path.with_suffix(".csv"))
    # with --processes N, the calibrating process(es) against the median of the others;
    # with --calibrate-processes K, the fit calibrated on K of them
    several = (
        "noise floor (calibrating process",
        "noise floor (median of",
        "(c) ttmpd, calibrated on",
    )
    f = f[f.method.isin(METHODS) | f.method.str.startswith(several)]
    info = pd.read_csv(path.with_name(path.stem + "_info.csv"))
    parts = info["device_rules"].str.split(" | ", regex=False)
    # measured per model: one line each
    timed = ("per-call overhead", "layout reorder", "weight streaming")
    rules = list(dict.fromkeys(x for p in parts for x in p if not x.startswith(timed)))
    for kind in timed:
        values = [x.split(": ")[-1] for p in parts for x in p if x.startswith(kind)]
        if values:
            rules.append(f"{kind} " + ", ".join(values) + " (one probe per model)")
    f = f.assign(within10_ci95=[wilson(v, int(meta["variants"])) for v in f["within10_pct"]])
    within = f[f.method == "(c) ttmpd"]["within10_pct"]
    out += [
        f"## Latency prediction, {title}, {label}",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}`.",
        *described,
        *RUN_NOTES.get(path.stem, []),
        "Random channel-pruned variants (ratios 0-0.8, unaligned counts), each measured in",
        "3 interleaved passes; 8 calibration prunes. "
        + (
            "Each variant measured beside the unpruned model (paired: its fraction of the "
            "original, times the original's median latency)."
            if meta.get("timing") == "paired"
            else "Each model timed in its own block."
        )
        + (
            " Calibration and test prunes measured in a fresh process that profiled "
            "nothing, as `ttmpd lut fit` calibrates."
            if meta.get("measured_in") == "fresh"
            else ""
        )
        + (
            f" Measured in {meta['processes']} fresh processes one after another: the first "
            f"calibrates, the median of the other {meta['processes'] - 1} is the truth."
            if meta.get("processes", 1) > 1
            else ""
        ),
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
            if label.startswith("onnxruntime") and prefix == "latency_prediction_heldout_"
            else []
        ),
        "",
        markdown_table(
            f[
                [
                    "model",
                    "method",
                    "within10_pct",
                    "within10_ci95",
                    "within5_pct",
                    "mape_pct",
                    "spearman",
                ]
            ]
        ),
        "",
    ]
    if "calibration_loo_worst_pct" in info.columns:  # runs since 2026-12-01
        out += [
            "What the calibration said beforehand (each calibration model predicted by the fit",
            "without it, as `ttmpd lut fit` prints it) beside the worst miss on the test prunes:",
            "",
            markdown_table(
                info[
                    [
                        "model",
                        "calibration_loo_median_pct",
                        "calibration_loo_worst_pct",
                        "test_worst_pct",
                        *(["streaming_priced"] if "streaming_priced" in info.columns else []),
                    ]
                ]
            ),
            "",
        ]


for path in sorted(Path("benchmarks/results").glob("latency_prediction_transformers_*.json")):
    label = path.stem.removeprefix("latency_prediction_transformers_")
    meta = json.loads(path.read_text())["meta"]
    f = pd.read_csv(path.with_suffix(".csv")).set_index(["model", "method"])
    info = pd.read_csv(path.with_name(path.stem + "_info.csv")).set_index("model")
    n = int(meta["variants"])
    rows = []
    for model in info.index:
        ttmpd, noise = f.loc[(model, "(c) ttmpd")], f.loc[(model, "noise floor (pass 2 vs 1)")]
        ci = wilson(ttmpd.within10_pct, n)
        rows.append(
            {
                "model": model,
                "ttmpd ±10% (95% CI)": f"{ttmpd.within10_pct:.0f} ({ci})",
                "ttmpd median abs err %": ttmpd.median_ape_pct,
                "ttmpd MAPE %": ttmpd.mape_pct,
                "uncalibrated ±10%": f.loc[(model, "(c0) ttmpd, uncalibrated")].within10_pct,
                "FLOPs ±10%": f.loc[(model, "(a) FLOPs-proportional")].within10_pct,
                "noise ±10%": noise.within10_pct,
                "noise median abs err %": noise.median_ape_pct,
                "unpriced ops": int(info.loc[model, "unpriced_ops"]),
                "priced share": info.loc[model, "priced_share"],
                "latency ms": info.loc[model, "latency_range_ms"],
                "load": info.loc[model, "load_1min"],
            }
        )
    within = f.xs("(c) ttmpd", level="method")["within10_pct"]
    out += [
        f"## Latency prediction, transformers (held out), {label}",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}`.",
        "Held out: no default of the predictor was chosen on these models (tuning set:",
        "ResNet-18, MobileNetV2, ResNet-56). Zoo MNIST ViT (shipped checkpoint, 28 px), timm",
        "ViT-Tiny and DeiT-Tiny at 224 px, a 2-layer BERT (hidden 256, 4 heads, MLP 1024) at",
        f"64 and 128 tokens. {n} random prunes per model (ratios 0-0.8 of heads and MLP",
        "widths; BERT: MLP widths only), each the median of 3 interleaved passes;",
        f"{meta['calibration']} calibration prunes. Target: >= 95% within ±10%; reached on",
        f"{int((within >= 95).sum())} of {len(within)} models. The noise floor is one pass",
        "against another (a single measurement; the reference is the median of three).",
        "Priced share: the unpruned model's plain LUT sum over its measured latency.",
        "Unpriced ops: ops extraction leaves without a unit. Load: 1-minute load average",
        "of the shared machine while the variants were measured. Where the noise floor is",
        "far below the target, a row says more about the machine than the predictor: at",
        "load 4-10 (2026-12-01, first runs) OpenVINO's BERT timings were quantised by the",
        "load (docs/design/transformer-units.md) and torch-cpu's varied 2x between passes;",
        "these tables are the reruns at load 0.5-3.",
        "",
        markdown_table(pd.DataFrame(rows)),
        "",
    ]
coverage = Path("benchmarks/results/coverage.json")
if coverage.exists():
    meta = json.loads(coverage.read_text())["meta"]
    frame = pd.read_csv(coverage.with_suffix(".csv")).astype(object).fillna("")
    columns = ["model", "backend", "units", "unit_sum_ms", "whole_ms", "whole_spread_pct",
               "share", "share_p10", "whole_cpu_ms", "share_cpu", "top_ops", "uncovered",
               "load_1min", "error"]  # fmt: skip
    frame["model"] = frame["model"].str.split("?").str[0]
    out += [
        "## Coverage: the share of measured latency inside priced units",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}`; {meta['threads']} thread(s).",
        "Each model's units profiled at its own configurations only (`ttmpd profile`,",
        "keep fraction 1: no grid), summed (the uncalibrated LUT sum), over the whole model",
        f"measured in {meta['rounds']} interleaved rounds (median; spread = max - min of the",
        "rounds over it). Below 1: time in unpriced ops or between ops, or weights an",
        "isolated unit keeps in cache; above 1: per-call overhead each unit pays alone.",
        "`share_p10`: the same with each side's fastest decile, less sensitive to a busy",
        "machine (it preempts a whole model of tens of ms far more than a unit of µs).",
        "`share_cpu`: the units' fastest decile over the whole model's process CPU time per",
        "call (`whole_cpu_ms`: the time it computed, without the time it waited preempted);",
        "read this one when the load is high.",
        "`top_ops`: the unit kinds with the largest shares of the unit sum. `uncovered`:",
        "each op without a unit, with its count. hf:bert is the 2-layer BERT at 128 tokens.",
        "The own-configuration tables are kept in `benchmarks/luts/` and reused by a rerun:",
        "units measured once under the load of their first run (ms-long units are",
        "preempted too, e.g. vit_b_16's linears: its share_cpu above 1).",
        "",
        markdown_table(frame[[c for c in columns if c in frame]]),
        "",
    ]
BASELINE_RUNS = {
    "ttmpd_vs_baselines_heldout": "Shipped ResNet-20",
    "ttmpd_vs_baselines_heldout_torchcpu": "Shipped ResNet-20 (torch-cpu, rerun)",
    "ttmpd_vs_baselines_heldout_torchcpu2": (
        "Shipped ResNet-20 (torch-cpu, second rerun: the check measures to a decision)"
    ),
    "ttmpd_vs_baselines_heldout_ort2": (
        "Shipped ResNet-20 (ONNX Runtime, rerun: relinearized solve, measured budget check)"
    ),
    "ttmpd_vs_baselines_vit_heldout": "Shipped ViT (`vit_mnist`)",
    "ttmpd_vs_baselines_vit_heldout2": "Shipped ViT (`vit_mnist`, rerun, three seeds)",
    "ttmpd_vs_baselines_vit_heldout3": (
        "Shipped ViT (`vit_mnist`, three seeds, ttmpd with the relinearized solve)"
    ),
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
        "3 interleaved passes, in "
        + (
            "a spawned process that trained nothing"
            if set(meta.get("remeasured_in", {}).values()) == {"fresh"}
            else "the benchmark's own process"
        )
        + "). Accuracy: mean over runs with the 95% t-interval half-width;",
        "times are medians (wall seconds, prune + fine-tune).",
        *([f"How it ran: {meta['note']}"] if meta.get("note") else []),
        *(
            f"Not run on {r['backend']} at budget {r['budget']} ({r['runs']} runs, "
            f"{', '.join(r['methods'])}): {r['reason']}."
            for r in meta.get("refused", [])
        ),
        *(
            [
                "BN statistics are re-estimated on the fine-tune images after the last",
                "step and before each checkpoint's evaluation; that pass counts in the time.",
            ]
            if meta.get("finetune", {}).get("adapt_bn")
            else [
                "",
                "Caveat: these rows predate the BN pass after the fine-tune (2026-12-01,",
                "docs/design/search.md): accuracies after 1-5 epochs were read with the",
                "statistics averaged during training, which lag behind the weights.",
            ]
            if meta.get("model", "resnet20") == "resnet20"
            else []
        ),
        *(
            []
            if str(meta.get("ttmpd_solve", "")).startswith("tightened")
            else [
                "",
                "Caveat: these rows predate the tightened `ttmpd` solve (2026-12-01,",
                "docs/design/search.md); ttmpd's rows come from the search before it.",
            ]
        ),
        "",
        markdown_table(methods),
        "",
        "ttmpd against each run's most accurate in-budget rival: the accuracy difference",
        "(mean, 95% CI half-width), the median ratio of ttmpd's time to reach the rival's",
        "accuracy (within 0.5 pp) over the rival's time, and in how many runs ttmpd meets",
        "the target (ratio <= 0.6, or >= 1 pp better in no more time; ttmpd's own prune",
        "within the budget rule, since 2026-12-01).",
        f"Cells where it does in most runs: {met} of {len(cells)}.",
        *(
            [
                "`ttmpd-long` is ttmpd's own prune fine-tuned on a 4x longer schedule (40",
                "epochs; never a rival). The `_long` columns ask the same questions over the",
                "checkpoints of both of ttmpd's schedules: the time-to-accuracy of a prune",
                "cheap enough to spend its saving on fine-tuning (the 4x was fixed before any",
                "run with it was looked at). Cells where ttmpd meets the target this way in",
                f"most runs: {int((cells['target_met_long'] > cells['runs'] / 2).sum())} "
                f"of {len(cells)}.",
            ]
            if "target_met_long" in cells
            else []
        ),
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
cache = Path("benchmarks/results/predictor_cache.json")
if cache.exists():
    meta = json.loads(cache.read_text())["meta"]
    out += [
        "## The predictor's rate cache in the ttmpd search",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}`.",
        "The shipped ResNet-20 on torch-cpu (the tuning runs' calibration), the tuning stream",
        f"({meta['stream']}), {meta['proxy_images']} proxy images; per budget a first search",
        "and a re-search at 0.92 x the budget, with each distinct unit configuration priced",
        "once (`cached`) and with every call going to the regressor (`uncached`), arms",
        f"alternating, median of {meta['repeats']} repeats (seconds). `same_plans`: both",
        "arms chose the same plans in every repeat.",
        "",
        markdown_table(pd.read_csv(cache.with_suffix(".csv"))),
        "",
    ]
verdict = Path("benchmarks/results/run_verdict.json")
if verdict.exists():
    meta = json.loads(verdict.read_text())["meta"]
    out += [
        "## `ttmpd run`'s final verdict: the run's process against fresh ones",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}` (from `benchmarks/`).",
        f"The demo (ONNX Runtime) and its scenario on torch-cpu, budget {meta['budget']},",
        f"{meta['runs']} runs each. `in_run`: the final ratio `run.json` records, measured",
        "in the process that pruned and distilled; `fresh_*`: the same `measure` stage run",
        f"again {meta['fresh']} times, each in a new process that loads the saved models.",
        "`in_run_offset_pct`: the in-run ratio against the fresh median.",
        "",
        markdown_table(pd.read_csv(verdict.with_suffix(".csv")), digits=3),
        "",
    ]
stability = Path("benchmarks/results/ratio_stability.json")
if stability.exists():
    meta = json.loads(stability.read_text())["meta"]
    frame = pd.DataFrame(json.loads(stability.read_text())["meta"]["summary"])
    out += [
        "## How repeatable is a measured ratio: blocked against paired",
        "",
        f"{meta['date']}, {meta['machine']}; `{meta['command']}` (from `benchmarks/`).",
        "The shipped ResNet-20 and two random prunes (overall ratios 0.3, 0.6), 1 thread;",
        f"each method measures the prune's fraction of the original {meta['repeats']} times,",
        "methods alternating. `blocked`: each model in its own block (3 interleaved rounds);",
        "`paired`: `measure_beside`, 3 paired measurements (samples of the two models",
        "alternating); `paired-1`: one. spread = (max - min) / median of the repeats, iqr",
        "= interquartile range / median: the noise a budget check meets on this host.",
        "Why and what it does not fix: docs/design/measurement.md.",
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
