"""Profiling cost: the old and the new way of building an ONNX Runtime LUT, side by side.

The case of the issue: a plain 9-conv VGG (conv3x3-ReLU, widths 64 64 M 128 128 M 256 256 M
512 512 512 M, global pool, linear) at 1x3x32x32, grid ``--channel-step 8`` with no cap
on in x out pairs. Two ways of measuring the same configurations:

* **old**: every round of every configuration exports the unit with the TorchScript
  exporter, opens a session, warms up and calibrates (``OnnxRuntimeBackend(reuse_graphs=
  False)``, ``TimingConfig(min_sample_ms=0.5, reuse_runners=False, settle_rounds=False)``),
  as tables were built before;
* **new** (the defaults): one graph export per unit structure, re-dimensioned for other
  channel counts; one session per configuration kept for all rounds, warm-up and
  calibration once; rounds sampled to a CI of 2%·sqrt(2) and pooled when they agree; a
  configuration whose first two rounds agree within 2% skips the third; 0.25 ms samples.

Sections (``--sections``):

* ``plan``: planned configurations of the old default grid (step 8, <= 64 per unit), the
  issue's grid and the new staircase default, for the VGG and ResNet-20 (MNIST, 1x1x28x28).
* ``speed``: chunks of 32 configurations drawn at random from the issue's grid, each
  measured with 3 rounds by both ways, alternating which goes first; entries per second
  and where the time went (preparing runners vs the timing loop).
* ``stability``: ``--rows`` random rows re-measured ``--repeats`` times by each way, chunk
  by chunk as ``profile_model`` measures them (3 interleaved rounds, combined into the row
  it writes), the ways alternating which goes first; ``--stability-runs`` independent
  samples of rows. Per row: the spread (CV) of its repeated measurements within each way,
  paired new - old with a bootstrap interval over passes and rows, the share of repeat
  pairs within 10%, the rows' own p10-p90 spread, and the agreement of the ways' medians.
* ``grid``: both default grids profiled; a latency predictor fitted on each is scored on
  ``--held-out`` configurations of the issue's grid that neither table holds.
* ``end-to-end``: ``profile_model`` on the issue's grid (new way; ``--full-old``: new, old,
  new, the old run ~10-30 min here) and on the staircase grid, with the pilot's ETA
  against the time the rest took. Not interleaved: ``speed`` has the controlled ratio.

Usage::

    python benchmarks/profiling_speed.py                       # all but the full old run
    python benchmarks/profiling_speed.py --sections speed stability --chunks 6

Prints a table per section and writes benchmarks/results/profiling_speed_<section>.{csv,json}.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results
from torch import nn

from ttmpd.base import reference_checkpoint_path
from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.models import load_checkpoint
from ttmpd.profiler import (
    BackendConfig,
    GridConfig,
    TimingConfig,
    UnitConfig,
    extract_units,
    grid_configs,
)
from ttmpd.profiler._timing import combine_rounds
from ttmpd.profiler.backends.ort import OnnxRuntimeBackend

SHAPE = (1, 3, 32, 32)
WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, 512, "M")
#: the issue's grid: channel step 8, every in x out pair
ISSUE_GRID = GridConfig(channel_step=8, max_variants_per_unit=100_000)
OLD_DEFAULT = GridConfig(channel_step=8)
ROUNDS = 3
CHUNK = 32


def vgg9(num_classes: int = 10) -> nn.Module:
    """The plain 9-conv VGG of the issue (no batch norm)."""
    layers: list[nn.Module] = []
    c = 3
    for w in WIDTHS:
        if w == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, int(w), 3, padding=1), nn.ReLU()]
            c = int(w)
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers, *head).eval()


def ways(threads: int) -> dict[str, tuple[OnnxRuntimeBackend, TimingConfig]]:
    config = BackendConfig(threads=threads)
    return {
        "old": (
            OnnxRuntimeBackend(config, reuse_graphs=False),
            TimingConfig(min_sample_ms=0.5, reuse_runners=False, settle_rounds=False),
        ),
        "new": (OnnxRuntimeBackend(config), TimingConfig()),
    }


def _example() -> torch.Tensor:
    return torch.randn(*SHAPE, generator=torch.Generator().manual_seed(0))


def vgg_grid(backend: OnnxRuntimeBackend, grid: GridConfig) -> list[UnitConfig]:
    units = extract_units(vgg9(), _example(), backend.fusion).units
    return grid_configs(units, grid, backend.probe_rules())


# ----- plan ---------------------------------------------------------------------------------
def plan_section(threads: int) -> pd.DataFrame:
    backend = OnnxRuntimeBackend(BackendConfig(threads=threads))
    rules = backend.probe_rules()
    resnet20 = load_checkpoint(reference_checkpoint_path()).model.eval()
    models = {"vgg9": (vgg9(), SHAPE), "resnet20_mnist": (resnet20, (1, 1, 28, 28))}
    grids = {
        "old default (step 8, <=64/unit)": OLD_DEFAULT,
        "issue (step 8, all pairs)": ISSUE_GRID,
        "new default (staircase, <=64/unit)": GridConfig(),
    }
    records = []
    for name, (model, shape) in models.items():
        units = extract_units(model, torch.randn(*shape), backend.fusion).units
        for label, grid in grids.items():
            records.append(
                {"model": name, "grid": label, "planned": len(grid_configs(units, grid, rules))}
            )
    return pd.DataFrame(records)


# ----- speed --------------------------------------------------------------------------------
def _timed(backend, timing, chunk) -> dict:
    start = time.perf_counter()
    per_config = backend.measure_rounds(chunk, timing, ROUNDS)
    wall = time.perf_counter() - start
    timing_wall = sum(t.wall_s for ts in per_config for t in ts)
    return {
        "wall_s": wall,
        "timing_s": timing_wall,
        "prepare_s": wall - timing_wall,
        "rounds": sum(len(ts) for ts in per_config),
    }


def speed_section(threads: int, chunks: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    both = ways(threads)
    configs = vgg_grid(both["new"][0], ISSUE_GRID)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(configs), size=min(chunks * CHUNK, len(configs)), replace=False)
    # warm both ways up on the model's own units (first exports, session code paths)
    for backend, timing in both.values():
        backend.measure_rounds(configs[:4], timing, 1)
    per_chunk = []
    for n in range(chunks):
        chunk = [configs[i] for i in picks[n * CHUNK : (n + 1) * CHUNK]]
        order = ("old", "new") if n % 2 == 0 else ("new", "old")
        for way in order:
            backend, timing = both[way]
            per_chunk.append({"chunk": n, "way": way, **_timed(backend, timing, chunk)})
        print(f"speed chunk {n + 1}/{chunks}", file=sys.stderr)
    frame = pd.DataFrame(per_chunk)
    summary = []
    for way, part in frame.groupby("way", sort=False):
        entries = CHUNK * len(part)
        summary.append({
            "way": way,
            "entries": entries,
            "wall_s": part["wall_s"].sum(),
            "entries_per_s": entries / part["wall_s"].sum(),
            "median_chunk_entries_per_s": float(np.median(CHUNK / part["wall_s"])),
            "prepare_share": part["prepare_s"].sum() / part["wall_s"].sum(),
            "timing_share": part["timing_s"].sum() / part["wall_s"].sum(),
            "rounds_per_entry": part["rounds"].sum() / entries,
        })  # fmt: skip
    table = pd.DataFrame(summary)
    wide = frame.pivot(index="chunk", columns="way", values="wall_s")
    ratios = wide["old"] / wide["new"]
    table["speedup_total"] = table["wall_s"].max() / table["wall_s"]
    table["speedup_chunk_median"] = [1.0 if w == "old" else float(ratios.median()) for w in
                                     table["way"]]  # fmt: skip
    table["speedup_chunk_min"] = [1.0 if w == "old" else float(ratios.min()) for w in
                                  table["way"]]  # fmt: skip
    return table, frame


# ----- stability ----------------------------------------------------------------------------
def _pairs_within(values: np.ndarray, tol: float) -> float:
    pairs = list(itertools.combinations(values, 2))
    return float(np.mean([abs(a / b - 1) <= tol for a, b in pairs]))


def stability_section(
    threads: int, rows: int, repeats: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    both = ways(threads)
    configs = vgg_grid(both["new"][0], ISSUE_GRID)
    rng = np.random.default_rng(seed + 1)
    sample = [configs[i] for i in rng.choice(len(configs), size=rows, replace=False)]
    medians = {way: np.zeros((repeats, rows)) for way in both}
    spreads = {way: np.zeros((repeats, rows)) for way in both}
    walls = {way: 0.0 for way in both}
    for r in range(repeats):
        for at in range(0, rows, CHUNK):  # each chunk as profile_model measures it
            chunk = sample[at : at + CHUNK]
            order = ("old", "new") if (r + at // CHUNK) % 2 == 0 else ("new", "old")
            for way in order:
                backend, timing = both[way]
                start = time.perf_counter()
                per_config = backend.measure_rounds(chunk, timing, ROUNDS)
                walls[way] += time.perf_counter() - start
                for i, timings in enumerate(per_config, start=at):
                    kept = combine_rounds(timings, timing)  # the row profile_model writes
                    medians[way][r, i], spreads[way][r, i] = kept.median_ms, kept.spread
        print(f"stability seed {seed} pass {r + 1}/{repeats}", file=sys.stderr)
    per_row = pd.DataFrame({
        "seed": seed,
        "key": [c.key for c in sample],
        **{f"{way}_median_ms": np.median(medians[way], axis=0) for way in both},
        **{f"{way}_repeat_cv": _cv(medians[way]) for way in both},
        **{f"{way}_pairs_within_10pct": [_pairs_within(medians[way][:, i], 0.10)
                                         for i in range(rows)] for way in both},
    })  # fmt: skip
    agreement = per_row["new_median_ms"] / per_row["old_median_ms"] - 1
    diff, lo, hi = _paired_cv_difference(medians["new"], medians["old"], seed)
    summary = []
    for way in both:
        pair_diffs = [
            abs(a / b - 1)
            for i in range(rows)
            for a, b in itertools.combinations(medians[way][:, i], 2)
        ]
        summary.append({
            "seed": seed,
            "way": way,
            "rows": rows,
            "repeats": repeats,
            "repeat_cv_median_pct": 100 * float(per_row[f"{way}_repeat_cv"].median()),
            "repeat_cv_p90_pct": 100 * float(per_row[f"{way}_repeat_cv"].quantile(0.9)),
            "repeat_pair_diff_median_pct": 100 * float(np.median(pair_diffs)),
            "repeat_pairs_within_10pct": 100 * float(np.mean(np.array(pair_diffs) <= 0.10)),
            "row_p10_p90_spread_median_pct": 100 * float(np.median(spreads[way])),
            "wall_s_per_pass": walls[way] / repeats,
            "new_vs_old_median_diff_pct": 100 * float(agreement.median()),
            "new_vs_old_abs_diff_median_pct": 100 * float(agreement.abs().median()),
            "new_vs_old_abs_diff_p90_pct": 100 * float(agreement.abs().quantile(0.9)),
            "cv_new_minus_old_pp": 100 * diff,
            "cv_new_minus_old_ci_lo_pp": 100 * lo,
            "cv_new_minus_old_ci_hi_pp": 100 * hi,
        })  # fmt: skip
    return pd.DataFrame(summary), per_row


def _cv(medians: np.ndarray) -> np.ndarray:
    """Per row (column): the coefficient of variation of its repeated measurements."""
    return medians.std(axis=0) / medians.mean(axis=0)


def _paired_cv_difference(
    new: np.ndarray, old: np.ndarray, seed: int, n: int = 2000
) -> tuple[float, float, float]:
    """Median over rows of (new CV - old CV) and its 95% bootstrap interval, resampling
    passes (the same ones for both ways: they ran side by side) and rows."""
    repeats, rows = new.shape
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n):
        p, r = rng.integers(0, repeats, repeats), rng.integers(0, rows, rows)
        boot.append(np.median(_cv(new[np.ix_(p, r)]) - _cv(old[np.ix_(p, r)])))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(np.median(_cv(new) - _cv(old))), float(lo), float(hi)


# ----- end to end ---------------------------------------------------------------------------
def _record(plans: list, plan) -> None:
    plans.append((time.perf_counter(), plan))


def end_to_end_section(threads: int, full_old: bool) -> pd.DataFrame:
    runs = [("new", "issue", ISSUE_GRID), ("new", "staircase", GridConfig())]
    if full_old:  # new, old, new: a change of the host's load shows as two new walls
        runs[1:1] = [("old", "issue", ISSUE_GRID), ("new", "issue", ISSUE_GRID)]
    records = []
    for way, grid_name, grid in runs:
        backend, timing = ways(threads)[way]
        plans: list = []
        with tempfile.TemporaryDirectory() as tmp:
            result = profile_model(
                vgg9(), _example(), backend, Path(tmp) / "lut.parquet", grid=grid,
                timing=timing, rounds=ROUNDS, progress=sys.stderr.isatty(),
                on_plan=partial(_record, plans),
            )  # fmt: skip
            done = time.perf_counter()
        (_, plan), (at_pilot, pilot) = plans[0], plans[-1]
        records.append({
            "way": way,
            "grid": grid_name,
            "planned": plan.planned,
            "measured": result.measured,
            "wall_s": result.wall_s,
            "entries_per_s": result.measured / result.wall_s,
            "unstable_pct": 100 * float(result.table.frame["unstable"].mean()),
            "spread_median_pct": 100 * float(result.table.frame["spread"].median()),
            "pilot_eta_s": pilot.eta_s,
            "rest_took_s": done - at_pilot,
        })  # fmt: skip
        print(f"end-to-end {way} {grid_name}: {result.wall_s:.0f} s", file=sys.stderr)
    return pd.DataFrame(records)


# ----- grid ---------------------------------------------------------------------------------
def grid_section(threads: int, held_out: int, seed: int) -> pd.DataFrame:
    """Does the sparser default grid still let the predictor price counts off it? Both
    default grids profiled (new way), a latency predictor fitted on each, scored on
    ``held_out`` random configurations of the issue's grid that neither table holds."""
    backend, timing = ways(threads)["new"]
    grids = {"old default (step 8, <=64/unit)": OLD_DEFAULT, "staircase (new)": GridConfig()}
    tables, walls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, grid) in enumerate(grids.items()):
            result = profile_model(
                vgg9(), _example(), backend, Path(tmp) / f"{n}.parquet", grid=grid,
                timing=timing, rounds=ROUNDS, progress=False,
            )  # fmt: skip
            tables[name], walls[name] = result.table, result.wall_s
    known = set().union(*(set(t.frame["key"]) for t in tables.values()))
    pool = [c for c in vgg_grid(backend, ISSUE_GRID) if c.key not in known]
    rng = np.random.default_rng(seed + 2)
    test = [pool[i] for i in rng.choice(len(pool), size=min(held_out, len(pool)), replace=False)]
    truth = np.array([
        combine_rounds(ts, timing).median_ms
        for at in range(0, len(test), CHUNK)
        for ts in backend.measure_rounds(test[at : at + CHUNK], timing, ROUNDS)
    ])  # fmt: skip
    records = []
    for name, table in tables.items():
        error = np.abs(LatencyPredictor().fit(table).predict(test) / truth - 1)
        records.append({
            "grid": name,
            "rows": len(table),
            "profile_wall_s": walls[name],
            "held_out": len(test),
            "abs_err_median_pct": 100 * float(np.median(error)),
            "abs_err_p90_pct": 100 * float(np.percentile(error, 90)),
            "within_10pct": 100 * float(np.mean(error <= 0.10)),
        })  # fmt: skip
    return pd.DataFrame(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", nargs="+", default=["plan", "speed", "stability", "end-to-end", "grid"],
        choices=["plan", "speed", "stability", "end-to-end", "grid"],
    )  # fmt: skip
    parser.add_argument("--chunks", type=int, default=16, help="speed: chunks of 32")
    parser.add_argument("--rows", type=int, default=100, help="stability: rows re-measured")
    parser.add_argument("--repeats", type=int, default=10, help="stability: passes per way")
    parser.add_argument(
        "--stability-runs", type=int, default=3, help="stability: independent row samples"
    )
    parser.add_argument("--full-old", action="store_true", help="end-to-end old run too")
    parser.add_argument("--held-out", type=int, default=200, help="grid: configurations scored")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "profiling_speed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = {"threads": args.threads, "rounds": ROUNDS, "model": "vgg9 " + str(WIDTHS),
            "input": SHAPE, "seed": args.seed}  # fmt: skip
    out = args.out
    if "plan" in args.sections:
        frame = plan_section(args.threads)
        write_results(out.with_name(out.name + "_plan"), frame, **meta)
        print(markdown_table(frame))
    if "speed" in args.sections:
        frame, chunks = speed_section(args.threads, args.chunks, args.seed)
        write_results(out.with_name(out.name + "_speed"), frame, **meta, chunks=args.chunks)
        chunks.to_csv(out.with_name(out.name + "_speed_chunks.csv"), index=False)
        print(markdown_table(frame))
    if "stability" in args.sections:
        parts = [
            stability_section(args.threads, args.rows, args.repeats, args.seed + k)
            for k in range(args.stability_runs)
        ]
        frame = pd.concat([summary for summary, _ in parts], ignore_index=True)
        write_results(out.with_name(out.name + "_stability"), frame, **meta)
        rows = pd.concat([per_row for _, per_row in parts], ignore_index=True)
        rows.to_csv(out.with_name(out.name + "_stability_rows.csv"), index=False)
        print(markdown_table(frame))
    if "end-to-end" in args.sections:
        frame = end_to_end_section(args.threads, args.full_old)
        write_results(out.with_name(out.name + "_end_to_end"), frame, **meta)
        print(markdown_table(frame))
    if "grid" in args.sections:
        frame = grid_section(args.threads, args.held_out, args.seed)
        write_results(out.with_name(out.name + "_grid"), frame, **meta)
        print(markdown_table(frame))
    return 0


if __name__ == "__main__":
    sys.exit(main())
