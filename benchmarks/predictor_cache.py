"""The ttmpd search with and without the predictor's rate cache, side by side.

Same model (shipped ResNet-20), same tuning stream (MNIST-test, motion blur 5, seed 0), the
same calibrated torch-cpu predictor (the tuning runs' saved calibration when present), the
same 128 proxy images; per budget, a first search and a re-search 8% lower (as a budget
check's re-search), timed. ``cached``: ``LatencyPredictor`` prices each distinct unit
configuration once per fitted regressor (cleared before every first search); ``uncached``:
every call goes to the regressor, as before 2026-12-03. Arms alternate within each repeat.
Reports median seconds per arm, their ratio, and whether both arms chose the same plans
(they must: the cache returns the regressor's own figures).

    python benchmarks/predictor_cache.py [--budgets 0.4,0.5,0.7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results
from ttmpd_vs_baselines import backend_predictor, protocol_setup, search_config, split

from ttmpd.base import to_model_input
from ttmpd.data import corrupt
from ttmpd.lut import LatencyPredictor
from ttmpd.pruning import BudgetSearch, GroupOptions

CALIBRATION = RESULTS / "tuning" / "tune_aim0_torchcpu_models"


def uncached(self: LatencyPredictor, features):
    return self.estimator_.predict(features)


def timed_searches(model, x, predictor, images, budget: float) -> dict:
    """Seconds of a first search at ``budget`` and of a re-search at 0.92 · budget, with
    each result's plan."""
    predictor.__dict__.pop("_rate_cache", None)
    search = BudgetSearch(model, x, predictor, images,
                          search_config("ttmpd", budget, 0, GroupOptions()))  # fmt: skip
    out = {}
    for name, fraction in (("first", budget), ("again", 0.92 * budget)):
        start = time.perf_counter()
        result = search(fraction)
        out[f"{name}_s"] = time.perf_counter() - start
        out[f"{name}_plan"] = repr(result.plan)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.4,0.5,0.7")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, norm, test, backend, x, lut, table = protocol_setup("resnet20_mnist", "torch-cpu")
    predictor, _ = backend_predictor(table, lut, model, x, backend, CALIBRATION, "torch-cpu")
    images = corrupt(test.images, "motion_blur", 5, seed=0)
    tune, _, _ = split(images, test.labels, 512, 0)
    proxies = to_model_input(tune[:128], norm)
    cached_rates = LatencyPredictor._rates
    rows = []
    for repeat in range(args.repeats):
        for budget in [float(b) for b in args.budgets.split(",")]:
            for arm, rates in (("cached", cached_rates), ("uncached", uncached)):
                LatencyPredictor._rates = rates
                try:
                    row = timed_searches(model, x, predictor, proxies, budget)
                finally:
                    LatencyPredictor._rates = cached_rates
                rows.append({"repeat": repeat, "budget": budget, "arm": arm, **row})
    frame = pd.DataFrame(rows)
    table = []
    for budget, group in frame.groupby("budget"):
        arms = {arm: g for arm, g in group.groupby("arm")}
        same = all(
            (
                arms["cached"][f"{k}_plan"].to_numpy() == arms["uncached"][f"{k}_plan"].to_numpy()
            ).all()
            for k in ("first", "again")
        )
        entry = {"budget": budget}
        for k in ("first", "again"):
            c, u = arms["cached"][f"{k}_s"].median(), arms["uncached"][f"{k}_s"].median()
            entry |= {f"{k}_cached_s": c, f"{k}_uncached_s": u, f"{k}_ratio": c / u}
        table.append(entry | {"same_plans": same, "repeats": len(arms["cached"])})
    table = pd.DataFrame(table)
    meta = {"model": "resnet20_mnist", "backend": "torch-cpu", "stream": "motion_blur 5, seed 0",
            "proxy_images": 128, "repeats": args.repeats}  # fmt: skip
    write_results(RESULTS / "predictor_cache", table, **meta)
    print(markdown_table(table))
    return 0 if table["same_plans"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
