"""The greedy search with one-pass vs two-pass adaptive BN in its proxies, side by side.

Same model (shipped ResNet-20), same stream (MNIST-test, motion blur 5), same calibrated
ORT predictor and budgets, same 128 proxy images; only ``SearchProblem.proxies`` differs:
two-pass = ``adapt_bn`` then an eval forward (as before), one-pass =
``adaptive_bn_logits`` (the adaptation pass's own outputs). Reports search seconds, the
ratio, and whether both searches chose the same plan.

    python benchmarks/search_speed.py [--budgets 0.3,0.5,0.7] [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results

from ttmpd.base import reference_checkpoint_path, to_model_input
from ttmpd.data import corrupt, load_mnist
from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.models import load_checkpoint
from ttmpd.profiler import BackendConfig, GridConfig, get_backend
from ttmpd.pruning import SearchConfig, adapt_bn, calibrate_predictor, prune
from ttmpd.pruning._problem import SearchProblem
from ttmpd.pruning._proxies import agreement_proxies

LUTS = Path(__file__).parent / "luts"


def two_pass(self, masker, state):
    candidate = adapt_bn(masker.masked(self.removed(state)), self.images)
    return agreement_proxies(candidate, self.images, self.teacher)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.3,0.5,0.7")
    parser.add_argument("--backend", default="onnxruntime")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(reference_checkpoint_path())
    model, norm = checkpoint.model.eval(), checkpoint.normalization
    test = load_mnist("test")
    images = corrupt(test.images[:128], "motion_blur", 5, seed=0)
    calib, x = to_model_input(images, norm), to_model_input(images[:1], norm)
    backend = get_backend(args.backend, BackendConfig(threads=1))
    lut = LUTS / f"resnet20_mnist-{args.backend}.parquet"
    table = profile_model(model, x, backend, lut, grid=GridConfig(channel_step=8), resume=True,
                          progress=False).table  # fmt: skip
    predictor = LatencyPredictor().fit(table)
    calibrate_predictor(predictor, model, x, backend, 4)
    one_pass = SearchProblem.proxies
    rows = []
    for budget in map(float, args.budgets.split(",")):
        config = SearchConfig(budget=budget, progress=False)
        SearchProblem.proxies = two_pass
        try:
            slow = prune(model, x, predictor, calib, config)
        finally:
            SearchProblem.proxies = one_pass
        fast = prune(model, x, predictor, calib, config)
        rows.append({"backend": args.backend, "budget": budget, "two_pass_s": slow.search_s,
                     "one_pass_s": fast.search_s, "ratio": fast.search_s / slow.search_s,
                     "same_plan": fast.plan.keep == slow.plan.keep,
                     "fresh_evaluations": int(fast.log["fresh"].sum())})  # fmt: skip
        print(rows[-1], file=sys.stderr)
    frame = pd.DataFrame(rows)
    write_results(RESULTS / "search_speed", frame)
    print(markdown_table(frame))
    print(f"\nmedian one-pass / two-pass search time: {frame['ratio'].median():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
