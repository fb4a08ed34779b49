"""Latency prediction: does the LUT predictor price pruned models it has never seen?

Two model sets, batch 1, 1 thread:

* **tuning set** (``--set tuned``): ResNet-18 and MobileNetV2 at 224x224, CIFAR ResNet-56
  at 32x32. The predictor's defaults (features, regressor, calibration form) were chosen
  on these.
* **held-out set** (``--set held-out``): torchvision architectures no default was chosen
  on, built without weights, at 224 and 32 px: EfficientNet-B0, MobileNetV3-small,
  MNASNet 0.5 and SqueezeNet 1.1. (ShuffleNetV2 does not trace in Torch-Pruning, and
  RegNet's and ResNeXt's grouping takes minutes; see the transformers and zoos issue.)
* **second held-out set** (``--set held-out-2``): torchvision architectures nobody had run
  through ttmpd before 2026-12-02, chosen before any was measured, at 32 px: RegNetX-400MF,
  ShuffleNetV2 x0.5, GoogLeNet, DenseNet-121 and ResNeXt-50 (32x4d). VGG-11 (BN), chosen
  first, was replaced before any timing: its 7x7 adaptive pool does not export to ONNX at
  32 px.
* **third held-out set** (``--set held-out-3``): chosen on 2026-12-02 before any was
  measured pruned, after the weight streaming cost was designed on the second set (whose
  models are therefore no longer blind for it), at 32 px: RegNetY-400MF, MNASNet 1.0 and
  ResNet-50 (only their unpruned unit coverage at 224 px had been run, ``coverage.py``).
* **fourth held-out set** (``--set held-out-4``): chosen on 2026-12-03 before any was
  measured, after the fitted streaming scale (``memory_pricing="fit"``) was written on what
  the third set showed, at 32 px: RegNetX-800MF (28 MB of weights), ResNet-34 (85 MB) and
  ShuffleNetV2 x1.5 (14 MB), all beyond the host's probed cache capacity.
* **fifth held-out set** (``--set held-out-5``): chosen on 2026-12-03 at 21:07, before any
  was measured, after the missed share's shape (a ramp) was designed on the Intel host's
  probe and the first held-out set's misses there, at 32 px: SqueezeNet 1.0 (5 MB of
  weights), ShuffleNetV2 x1.0 (9 MB), MNASNet 0.75 (13 MB) and MobileNetV3-large (22 MB),
  whose prunes cross that host's 1-4 MiB ramp.
* **sixth held-out set** (``--set held-out-6``): chosen on 2026-12-04 at 01:31, before any
  was measured, after the in-model weight cost (``weight_pricing``) was designed on the
  tuning set and the fifth set's misses, at 32 px: EfficientNet-B1 (31 MB of weights),
  RegNetY-800MF (25 MB), MNASNet 1.3 (25 MB) and ShuffleNetV2 x2.0 (29 MB).
* **seventh held-out set** (``--set held-out-7``): chosen on 2026-12-04 at 06:57, before any
  was measured, after the streaming charge less what a unit paid alone (``memory_alone``)
  was designed on the tuning set and the fifth and sixth sets, at 32 px: EfficientNet-B2
  (36 MB of weights), RegNetY-1.6GF (45 MB) and RegNetX-1.6GF (37 MB).
* **transformers** (``--set transformers``, also held out: nothing was tuned on them): the
  zoo's MNIST ViT (shipped checkpoint, 28x28), timm ViT-Tiny and DeiT-Tiny at 224 px, and a
  2-layer BERT encoder (``hf:bert``, hidden 256, 4 heads, MLP 1024) at 64 and 128 tokens.
  Random plans prune attention heads and MLP widths (BERT: MLP widths only; its separate
  query/key/value linears are not a heads group).

For each CPU backend and model:

1. build (or reuse, ``benchmarks/luts/``) the device LUT: channel step 8, <= 16 in x out
   pairs per unit, 8 off-grid channel counts per unit (stratified by residue mod 8; LUTs
   built before that sampler also keep their earlier uniform off-grid rows);
2. draw random channel-pruned variants with ttmpd's dependency-aware pruning
   (``ttmpd.pruning.random_plan``: overall ratios uniform in 0-80%, per-group ratios random):
   8 calibration variants (`ttmpd.pruning.calibration_variants`, ratios 0.1-0.8) and 40 test
   variants;
3. measure every calibration and test variant end to end in 3 interleaved passes, in a
   spawned process that profiled nothing (``--measure-in fresh``, the default since
   2026-12-03, as the README path calibrates: ``ttmpd lut fit`` runs in its own process;
   ``--measure-in profiling`` measures in the process that built the LUT, as every run
   before did, which on some models reads 14-23% off a fresh process; ``--processes N``
   measures them in N fresh processes one after another: the first calibrates, the median
   of the other N-1 is the truth, the calibrating process against it is one more noise
   floor row, and ``process_spread_pct`` is each variant's slowest process over its
   fastest; with ``--calibrate-processes K`` the first K calibrate one more fit,
   "calibrated on K processes", on the median of their readings, and the truth is the
   median of the other N-K); the median of the 3 is the measured latency, and pass 2
   against pass 1 is the noise floor of a single measurement. ``--timing paired`` (the
   default) measures each variant beside the unpruned model
   (``ttmpd.pruning.measure_beside``: samples of the two in alternation, so a host
   slowdown scales both): its latency is its median fraction of
   the original times the original's median latency over every pair. ``--timing blocked``
   times each model in its own block (the benchmark before 2026-12-02): on a shared host
   whose speed flips for seconds at a time, its noise floor alone can miss ±10%;
4. compare on the test variants
   (a) FLOPs-proportional: ``k · MACs`` with ``k`` fitted on the unpruned model,
   (b) plain LUT sum (HALP/NetAdapt style; a missing key falls back to the measured entry
       with the nearest channel counts, since exact-key tables fail otherwise),
   (c) the ttmpd predictor: regression + calibration on the unpruned model and the 8
       calibration variants (also reported: (c) before calibration, and (c) fitted on 25%
       of the LUT: a random quarter of its rows, and the sparse grid that ``ttmpd profile
       --sample-fraction 0.25`` measures, a quarter of each unit's grid spread evenly;
       and, where the table's device rules hold a weight streaming cost, the fit that prices
       it where the calibration's leave-one-out error says it helps,
       ``memory_pricing="auto"``, and the fit without it; (c) itself scales it
       (``memory_pricing="fit"``, the default since 2026-12-03; its scale is
       ``streaming_fit_scale`` in ``*_info.csv``));
5. report share within ±10% / ±5%, MAPE, median |error|, Spearman of each against the
   measured latency, and the same for pass 2 against pass 1 (the noise floor) and for the
   test variants measured again in the other process of step 3 (the between-process
   floor); per pair also
   the ops extraction leaves unpriced and the priced share (the unpruned model's plain LUT
   sum over its measured latency).

Also: cross-validated regressor choice on each LUT, and prune-savings throughput. Each
(backend, model) pair runs in a fresh process (``--same-process`` to turn it off; see
:func:`_process.isolated` for why).

    python benchmarks/latency_prediction.py                  # tuning set, ~20 min on 2 cores
    python benchmarks/latency_prediction.py --set held-out   # held-out torchvision set
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/latency_prediction.py \
        --set held-out --backends torch-cpu                  # an emulated AVX2 host
    python benchmarks/latency_prediction.py --quick          # resnet56 only, 12 variants
    python benchmarks/latency_prediction.py --set transformers --variants 20 \
        --backends onnxruntime openvino --out benchmarks/results/latency_prediction_transformers

Writes benchmarks/results/latency_prediction.{csv,json}, *_cv.csv, *_savings.csv,
*_variants.csv (every test variant: measured passes, weight bytes and each method's
prediction), *_calibration.csv (each calibration variant's measured latency, for refits
offline) and a
predicted-vs-measured plot per backend. Each finished (backend, model) pair is kept under
``<out>.partial/`` until the tables are written: a run interrupted after hours resumes
where it stopped when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import shutil
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _process import isolated
from _report import RESULTS, markdown_table, write_results
from scipy.stats import spearmanr

import ttmpd.models
from ttmpd.errors import InputError
from ttmpd.lut import (
    LatencyPredictor,
    LatencyTable,
    PruneSavings,
    cross_validate_regressors,
    plot_predicted_vs_measured,
    profile_model,
    unit_inputs,
)
from ttmpd.models import load_model
from ttmpd.profiler import BackendConfig, GridConfig, extract_units, get_backend, grid_configs
from ttmpd.profiler._fingerprint import kernel_isa
from ttmpd.profiler._streaming import fit_streaming
from ttmpd.pruning import (
    MODEL_TIMING,
    apply_plan,
    calibration_round_to,
    calibration_variants,
    channel_groups,
    measure_beside,
    random_plan,
)

PASSES = 3
TIMINGS = ("paired", "blocked")
#: --measure-in: where the variants are measured (module docstring, step 3)
PROCESSES = ("fresh", "profiling")

LUTS = Path(__file__).parent / "luts"
TUNED = {
    "resnet18": ("resnet18", (1, 3, 224, 224)),
    "mobilenet_v2": ("mobilenet_v2", (1, 3, 224, 224)),
    "resnet56": ("resnet56", (1, 3, 32, 32)),
}
HELD_OUT = {
    f"{arch}@{px}": (f"torchvision:{arch}", (1, 3, px, px))
    for arch in ("efficientnet_b0", "mobilenet_v3_small", "mnasnet0_5", "squeezenet1_1")
    for px in (224, 32)
}
HELD_OUT_2 = {
    f"{arch}@32": (f"torchvision:{arch}", (1, 3, 32, 32))
    for arch in (
        "regnet_x_400mf",
        "shufflenet_v2_x0_5",
        "googlenet",
        "densenet121",
        "resnext50_32x4d",
    )
}
HELD_OUT_3 = {
    f"{arch}@32": (f"torchvision:{arch}", (1, 3, 32, 32))
    for arch in ("regnet_y_400mf", "mnasnet1_0", "resnet50")
}
HELD_OUT_4 = {
    f"{arch}@32": (f"torchvision:{arch}", (1, 3, 32, 32))
    for arch in ("regnet_x_800mf", "resnet34", "shufflenet_v2_x1_5")
}
HELD_OUT_5 = {
    f"{arch}@32": (f"torchvision:{arch}", (1, 3, 32, 32))
    for arch in ("squeezenet1_0", "shufflenet_v2_x1_0", "mnasnet0_75", "mobilenet_v3_large")
}
HELD_OUT_6 = {
    f"{arch}@32": (f"torchvision:{arch}", (1, 3, 32, 32))
    for arch in ("efficientnet_b1", "regnet_y_800mf", "mnasnet1_3", "shufflenet_v2_x2_0")
}
HELD_OUT_7 = {
    f"{arch}@32": (f"torchvision:{arch}", (1, 3, 32, 32))
    for arch in ("efficientnet_b2", "regnet_y_1_6gf", "regnet_x_1_6gf")
}
BERT = "hf:bert?num_hidden_layers=2,hidden_size=256,num_attention_heads=4,intermediate_size=1024"
#: rank-2 shapes are (batch, tokens) of token ids
TRANSFORMERS = {
    "vit_mnist": (str(Path(ttmpd.models.__file__).parent / "vit_mnist.pt"), (1, 1, 28, 28)),
    "vit_tiny@224": ("timm:vit_tiny_patch16_224", (1, 3, 224, 224)),
    "deit_tiny@224": ("timm:deit_tiny_patch16_224", (1, 3, 224, 224)),
    "bert2@64": (BERT, (1, 64)),
    "bert2@128": (BERT, (1, 128)),
}
MODELS = {
    **TUNED,
    **HELD_OUT,
    **HELD_OUT_2,
    **HELD_OUT_3,
    **HELD_OUT_4,
    **HELD_OUT_5,
    **HELD_OUT_6,
    **HELD_OUT_7,
    **TRANSFORMERS,
}
SETS = {
    "tuned": list(TUNED),
    "held-out": list(HELD_OUT),
    "held-out-2": list(HELD_OUT_2),
    "held-out-3": list(HELD_OUT_3),
    "held-out-4": list(HELD_OUT_4),
    "held-out-5": list(HELD_OUT_5),
    "held-out-6": list(HELD_OUT_6),
    "held-out-7": list(HELD_OUT_7),
    "transformers": list(TRANSFORMERS),
    "all": list(MODELS),
}
GRID = GridConfig(channel_step=8, max_variants_per_unit=16, off_grid_per_unit=8)
_SHAPE_COLS = [
    "op", "batch", "in_h", "in_w", "out_h", "out_w", "kernel_h", "kernel_w", "stride_h",
    "stride_w", "pad_h", "pad_w", "dilation_h", "dilation_w", "bias", "bn", "act", "n_inputs",
    "broadcast", "ceil_mode", "dtype", "layout",
]  # fmt: skip


class NearestLut:
    """Plain LUT sum: exact entry, else the same-shape entry with the nearest channels."""

    def __init__(self, table: LatencyTable) -> None:
        frame = table.frame
        self.exact = dict(zip(frame["key"], frame["latency_ms"], strict=True))
        depthwise = (frame["groups"] > 1) & (frame["groups"] == frame["in_channels"])
        shape = frame[_SHAPE_COLS].astype(str).agg("|".join, axis=1) + depthwise.astype(str)
        self.by_shape = {
            k: g[["in_channels", "out_channels", "latency_ms"]].to_numpy(dtype=float)
            for k, g in frame.assign(shape=shape).groupby("shape")
        }

    def unit(self, config) -> tuple[float, bool]:
        hit = self.exact.get(config.key)
        if hit is not None:
            return hit, True
        depthwise = config.groups > 1 and config.groups == config.in_channels
        shape = "|".join(str(getattr(config, c)) for c in _SHAPE_COLS) + str(depthwise)
        rows = self.by_shape.get(shape)
        if rows is None:
            return float("nan"), False
        d = np.abs(rows[:, 0] - config.in_channels) + np.abs(rows[:, 1] - config.out_channels)
        return float(rows[np.argmin(d), 2]), False

    def model(self, configs) -> tuple[float, float]:
        values = [self.unit(c) for c in configs]
        return sum(v for v, _ in values), float(np.mean([hit for _, hit in values]))


def example_input(model: torch.nn.Module, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """N(0, 1) images for a rank-4 ``shape``; for rank 2, token ids below the vocabulary of
    the model's first ``nn.Embedding``."""
    generator = torch.Generator().manual_seed(seed)
    if len(shape) != 2:
        return torch.randn(*shape, generator=generator)
    embedding = next(m for m in model.modules() if isinstance(m, torch.nn.Embedding))
    return torch.randint(0, embedding.num_embeddings, shape, generator=generator)


def metrics(pred: np.ndarray, measured: np.ndarray) -> dict:
    err = pred / measured - 1
    ok = np.isfinite(err)
    return {
        "within10_pct": 100 * float(np.mean(np.abs(err) <= 0.10)),
        "within5_pct": 100 * float(np.mean(np.abs(err) <= 0.05)),
        "mape_pct": 100 * float(np.mean(np.abs(err[ok]))) if ok.any() else float("nan"),
        "median_ape_pct": 100 * float(np.median(np.abs(err[ok]))) if ok.any() else float("nan"),
        "spearman": float(spearmanr(pred[ok], measured[ok])[0]) if ok.sum() > 2 else float("nan"),
        "failed": int((~ok).sum()),
    }


def lut_path(backend_name: str, name: str) -> Path:
    """Where a pair's LUT is kept: ``benchmarks/luts/<model>-<backend>-<kernel ISA>.parquet``."""
    emulated = kernel_isa().replace("aten=", "").replace(";", "-").replace("=", "")
    return LUTS / f"{name.replace('@', '-')}-{backend_name}-{emulated}.parquet"


def build_lut(backend, name, model, x, grid: GridConfig) -> tuple[LatencyTable, float]:
    LUTS.mkdir(exist_ok=True)
    path = lut_path(backend.name, name)
    reuse = path.exists()
    result = profile_model(
        model, x, backend, path, grid=grid, resume=True, model_name=name,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    return result.table, (float("nan") if reuse and not result.measured else result.wall_s)


def measure_passes(backend, model, variants, x, timing: str) -> np.ndarray:
    """Latency (ms) of each of ``variants``, :data:`PASSES` interleaved passes; shape
    ``(PASSES, len(variants))``. ``paired``: each variant's fraction of ``model`` measured
    beside it (:func:`~ttmpd.pruning.measure_beside`, one round per pass) times the median
    of the original's latency over every pair; ``model`` itself is its own fraction 1.
    ``blocked``: each variant timed alone."""
    if timing == "blocked":
        return np.array([[backend.measure_model(m, x, MODEL_TIMING).median_ms for m in variants]
                         for _ in range(PASSES)])  # fmt: skip
    originals, fractions = [], np.ones((PASSES, len(variants)))
    for p in range(PASSES):
        for i, variant in enumerate(variants):
            if variant is not model:
                original_ms, variant_ms = measure_beside(model, variant, x, backend, 1)
                originals.append(original_ms)
                fractions[p, i] = variant_ms / original_ms
    return fractions * float(np.median(originals))


def run_pair(
    backend_name: str,
    name: str,
    n_test: int,
    n_cal: int,
    seed: int,
    grid: GridConfig = GRID,
    timing: str = "paired",
    process: str = "fresh",
    processes: int = 1,
    calibrating: int = 1,
):
    backend, model, x = _rebuilt(backend_name, name, seed)
    table, lut_s = build_lut(backend, name, model, x, grid)
    groups = channel_groups(model, x)
    aligned = calibration_round_to(LatencyPredictor().fit(table))
    cal_models = calibration_variants(model, x, n_cal, 0, aligned)  # what `ttmpd lut fit` measures
    ratios, test_models = pruned_variants(model, x, groups, n_test, seed)
    start = time.perf_counter()
    if process == "fresh":
        # as the README path measures: `ttmpd lut fit` calibrates in a process that
        # profiled nothing, and a deployed model runs in one
        runs = [np.asarray(isolated(fresh_passes, backend_name, name, n_test, n_cal, seed,
                                    timing, str(lut_path(backend_name, name))))
                for _ in range(processes)]  # fmt: skip
    else:
        runs = [measure_passes(backend, model, cal_models + test_models, x, timing)]
    measure_s = time.perf_counter() - start
    load_1min = os.getloadavg()[0]  # how busy the shared machine was while measuring
    cal_ms, consensus_ms, truth, per_process = process_truth(runs, len(cal_models), calibrating)
    passes = runs[0]
    pass1, pass2 = passes[0, len(cal_models) :], passes[1, len(cal_models) :]
    # the test variants measured again in the other process: the one that profiled, or
    # one that did nothing else first
    if process == "fresh":
        profiling = np.median(measure_passes(backend, model, test_models, x, timing), axis=0)
        fresh, floor = truth, ("noise floor (profiling process vs fresh)", profiling)
    else:
        fresh = np.asarray(isolated(fresh_process_ms, backend_name, name, n_test, seed, timing))
        profiling, floor = truth, ("noise floor (fresh process vs this one)", fresh)

    fusion = backend.fusion
    extracted = [extract_units(m, x, fusion).units for m in test_models]
    unit_lists = [[u.config for u in units] for units in extracted]
    graphs = [unit_inputs(units) for units in extracted]
    macs = np.array([sum(c.macs for c in cs) for cs in unit_lists])
    base_macs = sum(u.config.macs for u in extract_units(model, x, fusion).units)
    flops = cal_ms[0] / base_macs * macs
    nearest = NearestLut(table)
    lut_sum, coverage = zip(*(nearest.model(cs) for cs in unit_lists), strict=True)

    def ttmpd(fit_table, cal=cal_ms, **params) -> tuple[np.ndarray, np.ndarray, LatencyPredictor]:
        p = LatencyPredictor(**params).fit(fit_table)
        raw = np.array([p.predict(cs).sum() for cs in unit_lists])
        p.fit_calibration([(m, x) for m in cal_models], cal)
        totals = np.array([p.calibrated_total(cs, inputs=g)
                           for cs, g in zip(unit_lists, graphs, strict=True)])  # fmt: skip
        return raw, totals, p

    raw, calibrated, fitted = ttmpd(table)
    loo = 100 * np.abs(fitted.calibration_loo_)
    rules = table.meta.device_rules
    reorders = rules is not None and rules.blocked is not None and rules.blocked.prices_reorders
    # the same fit without the probed reorder cost (the fit before 2026-12-02)
    unpriced = ttmpd(table, reorder_pricing=False)[1] if reorders else None
    # without what units pay alone and not in a model (OpenVINO's residual convs; priced
    # since 2026-12-03 evening)
    priced_alone = rules is not None and bool(rules.isolation)
    alone = ttmpd(table, reorder_pricing=False)[1] if priced_alone and not reorders else None
    # reorders counted unit by unit (the fit before reorder_graph became the default)
    per_unit = ttmpd(table, reorder_graph=False)[1] if reorders else None
    # without what weights cost in a model beyond alone (the fit before 2026-12-04)
    unweighted = ttmpd(table, weight_pricing=False)[1]
    # weight streaming kept where the calibration's leave-one-out error says it helps
    # (the default for the held-out-3 run of 2026-12-02; off by default since)
    streams = rules is not None and rules.streaming is not None and rules.streaming.streams
    streamed = ttmpd(table, memory_pricing="auto")[1] if streams else None
    # weight streaming left out (the default from 2026-12-02 until the fitted scale)
    unstreamed = ttmpd(table, memory_pricing=False)[1] if streams else None
    # streaming charged in full to units that streamed alone too (the fit before 2026-12-04)
    charged_twice = ttmpd(table, memory_alone=False)[1] if streams else None
    # the missed share refitted to the same probe as (1 - C/F)+ (every table probed before
    # 2026-12-03 evening), where the probe chose another shape
    hyperbolic = None
    if streams and rules.streaming.shape != "hyperbolic":
        refit = fit_streaming(rules.streaming.samples, shapes=("hyperbolic",))
        meta = replace(table.meta, rules=replace(rules, streaming=refit).to_dict())
        hyperbolic = ttmpd(LatencyTable(table.frame, meta))[1]
    # calibrated on the median of several fresh processes' readings
    consensus = ttmpd(table, cal=consensus_ms)[1] if calibrating > 1 else None
    random_rows = table.frame.sample(frac=0.25, random_state=seed)
    _, random_cal, _ = ttmpd(LatencyTable(random_rows, table.meta))
    # what `ttmpd profile --sample-fraction 0.25` measures: a quarter of each unit's grid
    base = extract_units(model, x, fusion)
    units = base.units
    sparse_keys = {c.key for c in grid_configs(units, replace(grid, sample_fraction=0.25))}
    sparse_rows = table.frame[table.frame["key"].isin(sparse_keys)]
    _, sparse_cal, _ = ttmpd(LatencyTable(sparse_rows, table.meta))
    grid_rows = table.frame[table.frame["key"].isin({c.key for c in grid_configs(units, grid)})]
    methods = {
        "(a) FLOPs-proportional": flops,
        "(b) LUT sum (nearest key)": np.array(lut_sum),
        "(c0) ttmpd, uncalibrated": raw,
        "(c) ttmpd": calibrated,
        **({"(c) ttmpd, reorders unpriced": unpriced} if unpriced is not None else {}),
        **({"(c) ttmpd, reorders per unit": per_unit} if per_unit is not None else {}),
        **({"(c) ttmpd, isolation unpriced": alone} if alone is not None else {}),
        "(c) ttmpd, weights in a model unpriced": unweighted,
        **({"(c) ttmpd, streaming auto": streamed} if streamed is not None else {}),
        **({"(c) ttmpd, streaming unpriced": unstreamed} if unstreamed is not None else {}),
        **({"(c) ttmpd, streaming charged alone too": charged_twice} if streams else {}),
        **({"(c) ttmpd, streaming share (1 - C/F)": hyperbolic} if hyperbolic is not None else {}),
        **(
            {f"(c) ttmpd, calibrated on {calibrating} processes": consensus}
            if consensus is not None
            else {}
        ),
        "(c) ttmpd, random 25% of rows": random_cal,
        "(c) ttmpd, sparse grid 25%": sparse_cal,
    }
    rows = [{"backend": backend_name, "model": name, "method": method, **metrics(pred, truth)}
            for method, pred in methods.items()]  # fmt: skip
    rows.append({"backend": backend_name, "model": name, "method": "noise floor (pass 2 vs 1)",
                 **metrics(pass2, pass1)})  # fmt: skip
    rows.append({"backend": backend_name, "model": name, "method": floor[0],
                 **metrics(floor[1], truth)})  # fmt: skip
    if len(runs) > 1:
        others = len(runs) - calibrating
        rows.append({"backend": backend_name, "model": name,
                     "method": f"noise floor (calibrating process vs {others} others)",
                     **metrics(per_process[0], truth)})  # fmt: skip
    if calibrating > 1:
        rows.append({"backend": backend_name, "model": name,
                     "method": f"noise floor (median of {calibrating} calibrating processes "
                               f"vs {others} others)",
                     **metrics(np.median(per_process[:calibrating], axis=0), truth)})  # fmt: skip
    timed = lambda f: float((f["latency_ms"] * f["samples"]).sum())  # noqa: E731
    info = {
        "device_rules": rules.describe().replace("\n", " | ") if rules else "(none stored)",
        "sparse_rows": len(sparse_rows),
        "sparse_rows_pct": 100 * len(sparse_rows) / len(grid_rows),
        "sparse_timed_pct": 100 * timed(sparse_rows) / timed(grid_rows),
        "backend": backend_name,
        "model": name,
        "lut_rows": len(table),
        "lut_build_s": lut_s,
        "exact_key_coverage_pct": 100 * float(np.mean(coverage)),
        "test_ratio_range": f"{ratios.min():.2f}-{ratios.max():.2f}",
        "measure_s": measure_s,
        "timing": timing,
        "measured_in": process,
        "processes": len(runs),
        # per test variant, the slowest process's reading over the fastest's, minus 1 (%)
        "process_spread_median_pct": float(np.median(process_spread_pct(per_process))),
        # what the user sees before trusting the calibration, beside what it then missed
        "calibration_loo_median_pct": float(np.median(loo)),
        # whether the default calibration priced weight streaming, and at what scale of the
        # probed rate (memory_pricing="fit"; NaN without a streaming rule)
        "streaming_priced": bool(fitted.memory_priced_),
        "streaming_fit_scale": fitted.memory_scale_ if streams else float("nan"),
        "weight_us_per_mib": fitted.weight_ms_per_byte_ * 2**20 * 1e3,
        "calibration_loo_worst_pct": float(loo.max()),
        "test_worst_pct": float(100 * np.max(np.abs(calibrated / truth - 1))),
        "load_1min": load_1min,
        "latency_range_ms": f"{truth.min():.3f}-{truth.max():.3f}",
        "unpriced_ops": len(base.uncovered),
        "unpriced": ", ".join(sorted({op.aten for op in base.uncovered})),
        "priced_share": nearest.model([u.config for u in units])[0] / cal_ms[0],
        "priced_share_variants_median": float(np.median(np.array(lut_sum) / truth)),
    }
    scatter = {"measured": truth, "ttmpd": calibrated, "flops": flops, "lut": np.array(lut_sum)}
    per_variant = pd.DataFrame({"backend": backend_name, "model": name, "ratio": ratios,
                                "weight_bytes": [model_weight_bytes(m) for m in test_models],
                                "measured_ms": truth, "pass1_ms": pass1, "pass2_ms": pass2,
                                "fresh_process_ms": fresh,
                                "profiling_process_ms": profiling,
                                "process_spread_pct": process_spread_pct(per_process),
                                **{m: p for m, p in methods.items()}})  # fmt: skip
    # the calibration's own measurements, so that another calibration form can be refitted
    # offline (the variants are rebuilt from the seed: calibration_variants, pruned_variants)
    calibration = pd.DataFrame({"backend": backend_name, "model": name,
                                "index": range(len(cal_models)),
                                "weight_bytes": [model_weight_bytes(m) for m in cal_models],
                                "measured_ms": cal_ms})  # fmt: skip
    return rows, info, table, (model, x, groups), scatter, (per_variant, calibration)


def model_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's conv and linear weights (fp32): close to the footprint the
    predictor's streaming prices (:func:`~ttmpd.lut._features.weight_bytes`, which also
    counts biases and norms), read off the modules without extracting units."""
    layers = (torch.nn.Conv2d, torch.nn.Linear)
    return sum(4 * m.weight.numel() for m in model.modules() if isinstance(m, layers))


def process_truth(runs: list[np.ndarray], n_cal: int, calibrating: int = 1) -> tuple:
    """``(cal_ms, consensus_cal_ms, truth, per_process)`` from each process's passes
    (``runs[i]``: shape ``(PASSES, n_cal + n_test)``, calibration variants first).
    ``cal_ms``: the first process's medians over its passes (it calibrates, as ``ttmpd lut
    fit`` measures in one process); ``consensus_cal_ms``: per calibration variant, the
    median over the first ``calibrating`` processes' medians (``cal_ms`` for 1);
    ``per_process``: every process's test medians, shape ``(processes, n_test)``;
    ``truth``: with one process its own medians, else the median over the processes after
    the first ``calibrating``."""
    if len(runs) > 1 and not 1 <= calibrating < len(runs):
        raise ValueError(f"calibrating must be in [1, {len(runs) - 1}], got {calibrating}")
    medians = np.array([np.median(r, axis=0) for r in runs])
    per_process = medians[:, n_cal:]
    truth = per_process[0] if len(runs) == 1 else np.median(per_process[calibrating:], axis=0)
    consensus = np.median(medians[:calibrating, :n_cal], axis=0)
    return medians[0, :n_cal], consensus, truth, per_process


def process_spread_pct(per_process: np.ndarray) -> np.ndarray:
    """Per variant, ``100 · (max / min − 1)`` over the processes' readings
    (``per_process``: shape ``(processes, variants)``, ms); zeros for one process."""
    return 100 * (per_process.max(axis=0) / per_process.min(axis=0) - 1)


def pruned_variants(model, x, groups, n_test: int, seed: int) -> tuple[np.ndarray, list]:
    """``(ratios, models)``: ``n_test`` random prunes at ratios uniform in 0-0.8 (seeded),
    the model itself for a ratio below 0.001."""
    ratios = np.random.default_rng(seed).uniform(0.0, 0.8, n_test)
    models = [model if r < 1e-3 else apply_plan(model, x, random_plan(model, x, groups,
              target_ratio=r, seed=i)).eval() for i, r in enumerate(ratios)]  # fmt: skip
    return ratios, models


def _rebuilt(backend_name: str, name: str, seed: int) -> tuple:
    """``(backend, model, example input)`` of a pair, built in the calling process at 1
    thread (the pair's process and the spawned ones build them alike)."""
    spec, shape = MODELS[name]
    torch.set_num_threads(1)
    backend = get_backend(backend_name, BackendConfig(threads=1))
    model = load_model(spec).eval()
    return backend, model, example_input(model, shape, seed)


def fresh_passes(
    backend_name: str, name: str, n_test: int, n_cal: int, seed: int, timing: str, lut: str
) -> list[list[float]]:
    """:func:`measure_passes` of a pair's calibration and test variants (in that order),
    rebuilt in the calling process from the pair's LUT (``lut``: the calibration variants'
    channel alignment comes from the table, as in :func:`run_pair`); run through
    :func:`isolated`, a process that profiled nothing, as ``ttmpd lut fit`` calibrates."""
    backend, model, x = _rebuilt(backend_name, name, seed)
    aligned = calibration_round_to(LatencyPredictor().fit(LatencyTable.load(lut)))
    cal_models = calibration_variants(model, x, n_cal, 0, aligned)
    _, test_models = pruned_variants(model, x, channel_groups(model, x), n_test, seed)
    passes = measure_passes(backend, model, cal_models + test_models, x, timing)
    return [[float(v) for v in row] for row in passes]


def fresh_process_ms(
    backend_name: str, name: str, n_test: int, seed: int, timing: str = "paired"
) -> list[float]:
    """The test variants of a pair rebuilt and measured (medians of :data:`PASSES`
    interleaved passes, :func:`measure_passes`) in the calling process; run through
    :func:`isolated`, a process that loaded no table and ran no probe first. Against the
    pair's own measurement it is the between-process noise floor
    (docs/design/measurement.md)."""
    backend, model, x = _rebuilt(backend_name, name, seed)
    _, models = pruned_variants(model, x, channel_groups(model, x), n_test, seed)
    passes = measure_passes(backend, model, models, x, timing)
    return [float(v) for v in np.median(passes, axis=0)]


def savings_throughput(table: LatencyTable, model, x, n: int = 20_000, seed: int = 0) -> dict:
    predictor = LatencyPredictor().fit(table)
    savings = PruneSavings(predictor, model, x)
    prunable = [g for g in savings.groups.values() if g.prunable]
    candidates = [(g.id, k) for g in prunable for k in range(1, g.channels)]
    pick = np.random.default_rng(seed).integers(0, len(candidates), n)
    batch = [candidates[i] for i in pick]
    start = time.perf_counter()
    savings.savings(batch)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    savings.savings(batch)
    warm = time.perf_counter() - start
    return {"candidates": n, "groups": len(prunable), "cold_per_s": n / cold,
            "warm_per_s": n / warm}  # fmt: skip


def pair_job(backend_name: str, name: str, *args) -> dict:
    """Everything measured and computed for one (backend, model) pair; ``args``: the rest
    of :func:`run_pair`'s arguments."""
    warnings.simplefilter("ignore")
    rows, info, table, (model, x, _), scatter, frames = run_pair(backend_name, name, *args)
    cv = cross_validate_regressors(table, ["gbr", "hgb", "extra", "rf", "ridge"])
    return {
        "rows": rows,
        "info": info,
        "cv": [{"backend": backend_name, "model": name, **c} for c in cv.to_dict("records")],
        "savings": {"backend": backend_name, "model": name, **savings_throughput(table, model, x)},
        "scatter": scatter,
        "variants": frames[0],
        "calibration": frames[1],
    }


def partial_dir(out: Path) -> Path:
    """Where finished (backend, model) pairs of a run writing ``out`` are kept until its
    tables are written: ``<out>.partial/``."""
    return out.with_name(out.name + ".partial")


def _partial_file(out: Path, job: tuple) -> Path:
    digest = hashlib.sha1(repr(job).encode()).hexdigest()[:16]
    return partial_dir(out) / f"{digest}.pkl"


def load_partial(out: Path, job: tuple) -> dict | None:
    """A pair's result kept by an earlier, interrupted run of the same job (its
    arguments, grid and timing included), or None."""
    path = _partial_file(out, job)
    if not path.exists():
        return None
    with path.open("rb") as f:
        kept = pickle.load(f)
    return kept["result"] if kept.get("job") == repr(job) else None


def save_partial(out: Path, job: tuple, result: dict) -> None:
    """Keep a finished pair's result (written whole, then renamed into place)."""
    path = _partial_file(out, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump({"job": repr(job), "result": result}, f)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch-cpu", "onnxruntime", "openvino"])
    parser.add_argument("--set", choices=list(SETS), default="tuned", help="model set")
    parser.add_argument("--models", nargs="+", help="models by name (overrides --set)")
    parser.add_argument(
        "--sample-fraction",
        type=float,
        default=1.0,
        help="profile this share of each unit's grid (ttmpd profile --sample-fraction)",
    )
    parser.add_argument("--variants", type=int, default=40)
    parser.add_argument("--calibration", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--timing",
        choices=TIMINGS,
        default="paired",
        help="measure variants beside the original (paired) or each alone (blocked)",
    )
    parser.add_argument(
        "--measure-in",
        choices=PROCESSES,
        default="fresh",
        help="measure the calibration and test variants in a fresh process, as `ttmpd lut "
        "fit` does (default), or in the process that built the LUT (runs before 2026-12-03)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="with --measure-in fresh: measure in this many fresh processes; the first "
        "calibrates, the median of the others is the truth (default 1: one process does both)",
    )
    parser.add_argument(
        "--calibrate-processes",
        type=int,
        default=1,
        help="with --processes N: the first K of them also calibrate one more fit on the "
        "median of their readings; the truth is then the median of the other N-K (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="resnet56, 12 variants")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_prediction")
    parser.add_argument(
        "--same-process",
        dest="isolate",
        action="store_false",
        help="run every pair in this process (default: a fresh one each)",
    )
    args = parser.parse_args(argv)
    if args.processes < 1 or (args.processes > 1 and args.measure_in != "fresh"):
        parser.error("--processes must be 1, or more with --measure-in fresh")
    if args.calibrate_processes != 1 and not 1 <= args.calibrate_processes < args.processes:
        parser.error("--calibrate-processes must be 1, or in [2, --processes - 1]")
    args.models = args.models or SETS[args.set]
    if args.quick:
        args.models, args.variants = ["resnet56"], 12
    grid = replace(GRID, sample_fraction=args.sample_fraction)
    warnings.simplefilter("ignore")
    rows, infos, cv_rows, saving_rows, variant_frames, calibration_frames = [], [], [], [], [], []
    skipped: list[dict] = []
    for backend_name in args.backends:
        if not get_backend(backend_name).is_available():
            print(f"skip {backend_name}: unavailable", file=sys.stderr)
            continue
        scatter_all = {"ttmpd (c)": [], "LUT sum (b)": [], "FLOPs (a)": [], "measured": []}
        for name in args.models:
            job = (backend_name, name, args.variants, args.calibration, args.seed, grid,
                   args.timing, args.measure_in, args.processes,
                   args.calibrate_processes)  # fmt: skip
            result = load_partial(args.out, job)
            try:
                if result is None:
                    result = isolated(pair_job, *job) if args.isolate else pair_job(*job)
                    save_partial(args.out, job, result)
                else:
                    print(f"resumed {backend_name} {name} (kept by an earlier run)",
                          file=sys.stderr)  # fmt: skip
            except InputError as exc:  # the backend cannot run this model (e.g. no export)
                print(f"skip {backend_name} {name}: {exc}", file=sys.stderr)
                skipped.append({"backend": backend_name, "model": name, "reason": str(exc)})
                continue
            rows += result["rows"]
            variant_frames.append(result["variants"])
            calibration_frames.append(result.get("calibration", pd.DataFrame()))
            infos.append(result["info"])
            cv_rows += result["cv"]
            saving_rows.append(result["savings"])
            scatter = result["scatter"]
            scatter_all["measured"].append(scatter["measured"])
            scatter_all["ttmpd (c)"].append(scatter["ttmpd"])
            scatter_all["LUT sum (b)"].append(scatter["lut"])
            scatter_all["FLOPs (a)"].append(scatter["flops"])
            print(f"done {backend_name} {name}", file=sys.stderr)
        measured = np.concatenate(scatter_all.pop("measured"))
        plot_predicted_vs_measured(
            measured,
            {k: np.concatenate(v) for k, v in scatter_all.items()},
            args.out.parent
            / (
                f"{args.out.name}.png"
                if backend_name in args.out.name
                else f"{args.out.name}_{backend_name}.png"
            ),
            title=f"{backend_name}: {', '.join(args.models)} pruned variants",
        )
    frame = pd.DataFrame(rows)
    write_results(args.out, frame, variants=args.variants, calibration=args.calibration,
                  grid=grid.__dict__, pairs=infos, model_set=args.set, timing=args.timing,
                  measured_in=args.measure_in, processes=args.processes,
                  calibrate_processes=args.calibrate_processes,
                  skipped=skipped)  # fmt: skip
    pd.DataFrame(infos).to_csv(args.out.with_name(args.out.name + "_info.csv"), index=False)
    pd.concat(variant_frames).to_csv(args.out.with_name(args.out.name + "_variants.csv"),
                                     index=False)  # fmt: skip
    pd.concat(calibration_frames).to_csv(
        args.out.with_name(args.out.name + "_calibration.csv"), index=False
    )
    pd.DataFrame(cv_rows).to_csv(args.out.with_name(args.out.name + "_cv.csv"), index=False)
    pd.DataFrame(saving_rows).to_csv(args.out.with_name(args.out.name + "_savings.csv"),
                                     index=False)  # fmt: skip
    print(markdown_table(frame))
    print()
    print(markdown_table(pd.DataFrame(infos)))
    print()
    cv_frame = pd.DataFrame(cv_rows)
    print(markdown_table(cv_frame.groupby("regressor")[["mape_pct", "within10_pct", "fit_s"]]
                         .mean().reset_index().sort_values("mape_pct")))  # fmt: skip
    print()
    print(markdown_table(pd.DataFrame(saving_rows), digits=0))
    shutil.rmtree(partial_dir(args.out), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
