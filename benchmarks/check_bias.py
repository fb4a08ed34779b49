"""The budget check's reading of a kept prune against a full measurement.

In the tuning-set runs of ``ttmpd_vs_baselines.py`` the final re-measurement read ttmpd's
kept prunes a median 6% slower than its budget check had (docs/design/search.md). Two
candidates: the check (it stops once a prune is decided inside the band, and keeps the
slowest prune that was) or the fine-tune (the student measures slower than the prune it
came from). For every ttmpd row of a results name (``--name``: its saved ``.pruned.pt``,
the prune as the check measured it, and ``.pt``, the fine-tuned student), ``--repeats``
times, rows interleaved, each beside the original (``ttmpd.pruning.measure_beside``):

=========  =======================================================================
protocol   measurement
=========  =======================================================================
check      the prune, stopping as the check does (``thresholds``: the band's edges)
full       the prune, 3 rounds without an early stop (as the final re-measurement)
student    the fine-tuned student, 3 rounds without an early stop
=========  =======================================================================

Per row: the median ratio of each protocol, and ``student / full`` and ``full / check``
minus 1 (%); with the row's ``check_fractions`` (what its check read in the run).

    python benchmarks/check_bias.py --name tuning/tune_aim0_torchcpu --repeats 2
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results
from tqdm.auto import tqdm
from ttmpd_vs_baselines import key_name, protocol_setup

from ttmpd.pruning import budget_band, measure_beside

PROTOCOLS = ("check", "full", "student")


def readings(rows: list[dict], models, original, x, backend, repeats: int) -> pd.DataFrame:
    """One row per (result row, repeat, protocol) with the measured ``ratio`` of the
    original; rows interleaved within each repeat so a host drift touches them all."""
    out = []
    for repeat in range(repeats):
        for row in tqdm(rows, desc=f"repeat {repeat + 1}/{repeats}", unit="prune"):
            name = key_name(row)
            pruned = torch.load(models / f"{name}.pruned.pt", weights_only=False)
            student = torch.load(models / f"{name}.pt", weights_only=False)
            band = budget_band(row["budget"])
            for protocol, model, thresholds in (("check", pruned, band), ("full", pruned, ()),
                                                ("student", student, ())):  # fmt: skip
                original_ms, ms = measure_beside(original, model, x, backend,
                                                 thresholds=thresholds)  # fmt: skip
                out.append({"row": name, "repeat": repeat, "protocol": protocol,
                            "ratio": ms / original_ms})  # fmt: skip
    return pd.DataFrame(out)


def summary(frame: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """Per result row: each protocol's median ratio, ``student / full − 1`` and
    ``full / check − 1`` in %, and the run's ``check_fractions``."""
    medians = frame.pivot_table(index="row", columns="protocol", values="ratio",
                                aggfunc="median")  # fmt: skip
    out = []
    for row in rows:
        m = medians.loc[key_name(row)]
        out.append({"row": key_name(row), "budget": row["budget"],
                    "run_check": str(row.get("check_fractions", "")),
                    "run_final": row["ratio"], **{p: m[p] for p in PROTOCOLS},
                    "student_vs_full_pct": 100 * (m["student"] / m["full"] - 1),
                    "full_vs_check_pct": 100 * (m["full"] / m["check"] - 1)})  # fmt: skip
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="a ttmpd_vs_baselines results name")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backend", default="torch-cpu")
    args = parser.parse_args(argv)
    results = RESULTS / f"{args.name}.csv"
    models = RESULTS / f"{args.name}_models"
    if not results.exists() or not models.is_dir():
        parser.error(f"no results or saved models for {args.name!r} under {RESULTS}")
    frame = pd.read_csv(results)
    frame = frame[(frame["method"] == "ttmpd") & (frame["backend"] == args.backend)]
    rows = frame.to_dict("records")
    if not rows:
        parser.error(f"{args.name!r} has no ttmpd rows on {args.backend}")
    torch.set_num_threads(1)
    model, _, _, backend, x, _, _ = protocol_setup("resnet20_mnist", args.backend)
    measured = readings(rows, models, model, x, backend, args.repeats)
    table = summary(measured, rows)
    out = RESULTS / f"check_bias_{args.name.replace('/', '_')}"
    write_results(out, table, source=args.name, repeats=args.repeats, backend=args.backend)
    measured.to_csv(out.with_name(out.name + "_readings.csv"), index=False)
    print(markdown_table(table, digits=3))
    print()
    for col in ("student_vs_full_pct", "full_vs_check_pct"):
        print(f"{col}: median {np.median(table[col]):+.1f}%, "
              f"range {table[col].min():+.1f} to {table[col].max():+.1f}%")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
