"""Helpers of the benchmarks in benchmarks/ (the benchmarks themselves measure; not in CI)."""

from __future__ import annotations

import importlib.util
import math
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from nets import ResidualNet
from torch import nn

from ttmpd.profiler import extract_units, get_backend
from ttmpd.pruning import GroupOptions

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str, monkeypatch: pytest.MonkeyPatch):
    """benchmarks/<name>.py as a module (its sibling imports need benchmarks/ on the path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids).mean(dim=1)


def test_example_input_images_and_token_ids(monkeypatch):
    lp = _load("latency_prediction", monkeypatch)
    images = lp.example_input(ResidualNet(), (1, 3, 8, 8), seed=1)
    assert images.dtype == torch.float32 and images.shape == (1, 3, 8, 8)
    assert torch.equal(images, lp.example_input(ResidualNet(), (1, 3, 8, 8), seed=1))
    ids = lp.example_input(Tokens(), (2, 16), seed=0)
    assert ids.dtype == torch.int64 and ids.shape == (2, 16)
    assert int(ids.min()) >= 0 and int(ids.max()) < 50


def test_metrics_median_error(monkeypatch):
    lp = _load("latency_prediction", monkeypatch)
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    m = lp.metrics(measured * np.array([1.02, 0.9, 1.3, 1.0]), measured)
    assert m["median_ape_pct"] == pytest.approx(6.0)  # |err| 2, 10, 30, 0 -> median 6
    assert m["within10_pct"] == pytest.approx(75.0)
    assert m["mape_pct"] == pytest.approx(10.5)


def test_coverage_row_on_fake_backend(monkeypatch, tmp_path):
    cov = _load("coverage", monkeypatch)
    model, x = ResidualNet().eval(), torch.randn(1, 3, 16, 16)
    backend = get_backend("fake")
    row = cov.coverage_row(model, x, backend, tmp_path / "own.parquet")
    units = extract_units(model, x, backend.fusion).units
    assert row["units"] == len(units)
    assert row["uncovered_ops"] == 0 and row["uncovered"] == ""
    # the fake backend measures a whole model as 1.1 x its unit sum + 0.01 ms
    assert row["whole_ms"] == pytest.approx(1.1 * row["unit_sum_ms"] + 0.01)
    assert row["share"] == pytest.approx(row["unit_sum_ms"] / row["whole_ms"])
    assert row["whole_spread_pct"] == pytest.approx(0.0)
    assert row["share_p10"] == pytest.approx(row["share"])  # fake timings have no spread
    assert math.isnan(row["whole_cpu_ms"])  # the fake backend runs nothing to time
    assert (tmp_path / "own.parquet").exists()


def test_uncovered_counts_sorted_with_counts(monkeypatch):
    cov = _load("coverage", monkeypatch)

    class Op:
        def __init__(self, aten: str) -> None:
            self.aten = aten

    ops = [Op("aten.roll"), Op("aten.pad"), Op("aten.roll")]
    assert cov.uncovered_counts(ops) == "aten.pad x1, aten.roll x2"
    assert cov.uncovered_counts([]) == ""


def _baseline_row(method: str, accs: dict[int, float], times: dict[int, float], **extra):
    row = {"backend": "b", "corruption": "c", "seed": 1, "budget": 0.3, "method": method,
           "within_budget": True, "status": "ok"}  # fmt: skip
    row.update({f"acc_e{k}": v for k, v in accs.items()})
    row.update({f"time_e{k}_s": v for k, v in times.items()})
    last = max(accs)
    return {**row, "accuracy": accs[last], "total_s": times[last], **extra}


def _long_run(acc_e20: float, acc_e40: float):
    """One run: ttmpd at 70% after 10 epochs, ttmpd-long at the given accuracies after 20
    and 40, NetAdapt at 93% in 110 s."""
    import pandas as pd

    short = {0: 0.1, 1: 0.2, 2: 0.3, 5: 0.5, 10: 0.7}
    return pd.DataFrame([
        _baseline_row("ttmpd", short, {0: 3, 1: 4, 2: 5, 5: 6, 10: 8}),
        _baseline_row("ttmpd-long", {**short, 20: acc_e20, 40: acc_e40},
                      {0: 3, 1: 4, 2: 5, 5: 6, 10: 8, 20: 12, 40: 20}),
        _baseline_row("netadapt", {0: 0.9, 1: 0.9, 2: 0.9, 5: 0.9, 10: 0.93},
                      {0: 100, 1: 101, 2: 102, 5: 103, 10: 110}),
    ])  # fmt: skip


def test_the_long_schedule_counts_its_first_checkpoint_at_the_rivals_accuracy(monkeypatch):
    bench = _load("ttmpd_vs_baselines", monkeypatch)

    frame = _long_run(0.93, 0.95)
    run = bench.per_run(frame).iloc[0]
    assert run["rival"] == "netadapt" and np.isnan(run["time_ratio"]) and not run["target_met"]
    assert run["long_reach_epochs"] == 20 and run["time_ratio_long"] == pytest.approx(12 / 110)
    assert run["target_met_long"] and run["long_acc"] == pytest.approx(95)
    cell = bench.per_cell(bench.per_run(frame)).iloc[0]
    assert cell["target_met"] == 0 and cell["target_met_long"] == 1


def test_reach_time_takes_the_earliest_hit_of_any_schedule(monkeypatch):
    bench = _load("ttmpd_vs_baselines", monkeypatch)
    import pandas as pd

    a = pd.Series({"acc_e0": 0.1, "time_e0_s": 1.0, "acc_e10": 0.9, "time_e10_s": 9.0})
    b = pd.Series({"acc_e0": 0.1, "time_e0_s": 1.0, "acc_e5": 0.9, "time_e5_s": 5.0,
                   "acc_e10": float("nan"), "time_e10_s": 2.0})  # fmt: skip
    assert bench.reach_time([a, b], 0.85) == (5.0, 5)
    assert all(np.isnan(v) for v in bench.reach_time([a, b], 0.95))


def test_append_row_widens_a_partial_csv_written_with_fewer_columns(monkeypatch, tmp_path):
    bench = _load("ttmpd_vs_baselines", monkeypatch)
    import pandas as pd

    path = tmp_path / "p.partial.csv"
    pd.DataFrame([{"backend": "b", "method": "ttmpd", "acc_e10": 0.5}]).to_csv(path, index=False)
    bench.append_row(path, {"backend": "b", "method": "ttmpd-long", "acc_e40": 0.9})
    back = pd.read_csv(path)
    assert list(back.columns) == list(bench.COLUMNS)
    assert back["acc_e10"].tolist()[0] == 0.5 and back["acc_e40"].tolist()[1] == 0.9


def test_a_cell_whose_long_schedule_never_reaches_the_rival_still_reports_it(monkeypatch):
    bench = _load("ttmpd_vs_baselines", monkeypatch)

    frame = _long_run(0.85, 0.9)
    cell = bench.per_cell(bench.per_run(frame)).iloc[0]
    assert cell["long_acc_diff_pp"] == pytest.approx(-3.0) and cell["target_met_long"] == 0
    assert np.isnan(cell["median_time_ratio_long"])


def test_a_later_run_searches_with_the_first_runs_calibration(tmp_path, monkeypatch):
    """Rows added by a later run (one method rerun) must map budgets as the rows already
    there did: the calibration and the original's latency are saved once and reused."""
    from ttmpd.lut import profile_model

    bench = _load("ttmpd_vs_baselines", monkeypatch)
    torch.manual_seed(0)
    net, x = ResidualNet().eval(), torch.randn(1, 3, 8, 8)
    backend = get_backend("fake")
    lut = tmp_path / "t.parquet"
    table = profile_model(net, x, backend, lut, progress=False).table
    models = tmp_path / "models"
    first, first_ms = bench.backend_predictor(table, lut, net, x, backend, models, "fake")

    def measured_again(*args, **kwargs):
        raise AssertionError("a later run calibrated afresh")

    monkeypatch.setattr(bench, "calibrate_predictor", measured_again)
    again, again_ms = bench.backend_predictor(table, lut, net, x, backend, models, "fake")
    assert again_ms == first_ms
    assert again.calibration_ == first.calibration_
    assert again.predict_model(net, x).total_ms == first.predict_model(net, x).total_ms
    with pytest.raises(AssertionError, match="afresh"):  # another backend is calibrated
        bench.backend_predictor(table, lut, net, x, backend, models, "other")


def test_pruned_variants_are_the_same_in_every_process(monkeypatch):
    """The between-process floor measures the pair's variants again in another process:
    they must be rebuilt identically from the seed."""
    from ttmpd.pruning import channel_groups

    lp = _load("latency_prediction", monkeypatch)
    torch.manual_seed(0)
    net, x = ResidualNet().eval(), torch.randn(1, 3, 8, 8)
    groups = channel_groups(net, x)
    ratios, first = lp.pruned_variants(net, x, groups, 6, seed=3)
    again_ratios, again = lp.pruned_variants(net, x, channel_groups(net, x), 6, seed=3)
    np.testing.assert_array_equal(ratios, again_ratios)
    widths = [[tuple(p.shape) for p in m.parameters()] for m in first]
    assert widths == [[tuple(p.shape) for p in m.parameters()] for m in again]
    assert len({tuple(w) for w in widths}) > 1  # really pruned, and differently
    _, other = lp.pruned_variants(net, x, groups, 6, seed=4)
    assert [[tuple(p.shape) for p in m.parameters()] for m in other] != widths


def test_a_method_variant_names_its_within_group_order(monkeypatch):
    bench = _load("ttmpd_vs_baselines", monkeypatch)
    from ttmpd.pruning import GroupOptions, SearchConfig

    plain = bench.search_config("ttmpd", 0.4, 2, GroupOptions())
    assert (plain.method, plain.importance) == ("ttmpd", SearchConfig(budget=0.5).importance)
    variant = bench.search_config("ttmpd@taylor", 0.4, 2, GroupOptions(embedding=True))
    assert (variant.method, variant.importance, variant.budget, variant.seed) == (
        "ttmpd",
        "taylor",
        0.4,
        2,
    )
    assert variant.groups.embedding and not variant.progress


def test_a_ttmpd_prune_over_budget_meets_no_target(monkeypatch):
    """The same budget rule for ttmpd as for its rivals: fast and accurate but over budget
    counts as a miss, on either schedule."""
    bench = _load("ttmpd_vs_baselines", monkeypatch)

    frame = _long_run(0.93, 0.95)
    assert bench.per_run(frame).iloc[0]["target_met_long"]
    frame.loc[frame["method"].isin(["ttmpd", "ttmpd-long"]), "within_budget"] = False
    run = bench.per_run(frame).iloc[0]
    assert not run["ttmpd_within_budget"]
    assert run["time_ratio_long"] == pytest.approx(12 / 110)  # still reported
    assert not run["target_met"] and not run["target_met_long"]


def test_a_refused_budget_is_recorded_per_backend_and_budget_with_its_runs(monkeypatch):
    """A cell the search refused on one backend says which methods, how many runs and why;
    another backend's refusal at the same budget is its own record."""
    bench = _load("ttmpd_vs_baselines", monkeypatch)
    rows = [
        {
            "backend": "torch-cpu",
            "budget": 0.3,
            "method": m,
            "corruption": c,
            "seed": s,
            "status": "the budget is below what pruning can reach",
        }
        for m in ("ttmpd", "halp")
        for c in ("shear", "zoom_blur")
        for s in (1, 2)
    ]
    rows.append({"backend": "onnxruntime", "budget": 0.3, "method": "halp", "corruption": "shear",
                 "seed": 1, "status": "other"})  # fmt: skip
    records = bench.refused(pd.DataFrame(rows))
    assert [(r["backend"], r["budget"]) for r in records] == [
        ("onnxruntime", 0.3),
        ("torch-cpu", 0.3),
    ]
    assert records[1]["methods"] == ["halp", "ttmpd"] and records[1]["runs"] == 4
    assert records[1]["reason"] == "the budget is below what pruning can reach"
    assert records[0]["methods"] == ["halp"] and records[0]["runs"] == 1
    assert (
        bench.refused(
            pd.DataFrame(columns=["backend", "budget", "method", "corruption", "seed", "status"])
        )
        == []
    )


def test_ttmpd_gets_the_measured_budget_check_and_the_rivals_search_once(monkeypatch):
    from ttmpd.pruning import PruneResult

    bench = _load("ttmpd_vs_baselines", monkeypatch)
    searched, measured = [], []

    class FakeSearch:
        def __init__(self, model, x, predictor, calib, config):
            self.method = config.method

        def __call__(self, budget):
            searched.append((self.method, budget))
            return PruneResult(plan=None, model=torch.nn.Identity(), log=None,
                               base_latency_ms=1.0, predicted_latency_ms=budget,
                               target_latency_ms=budget, method=self.method,
                               search_s=0.25)  # fmt: skip

    def slow_device(original, model, example_input, backend, thresholds=()):
        measured.append(thresholds)
        return 1.0, 0.6  # every prune measures 0.6 of the original: over a 0.5 budget

    monkeypatch.setattr(bench, "BudgetSearch", FakeSearch)
    monkeypatch.setattr(bench, "measure_beside", slow_device)
    args = ("net", "x", "predictor", "calib", "backend")
    _, attempts = bench.prune_method("halp", 0.5, 0.5, 0, GroupOptions(), *args)
    assert len(attempts) == 1 and searched == [("halp", 0.5)] and not measured
    assert attempts[0]["search_s"] == 0.25
    searched.clear()
    _, attempts = bench.prune_method("ttmpd", 0.5, 0.5, 0, GroupOptions(), *args,
                                     first_aim=0.1)  # fmt: skip
    assert len(attempts) == 1 + bench.BUDGET_CHECKS == len(measured)
    assert [a["search_s"] for a in attempts] == [0.25] * len(attempts)  # the searches' own
    assert measured[0] == pytest.approx((0.45, 0.51))  # the check decides on the budget band
    assert [m for m, _ in searched] == ["ttmpd"] * len(attempts)
    assert searched[0][1] == pytest.approx(0.45)  # the first search aimed 10% under
    assert searched[1][1] < searched[0][1]  # searched again below the budget
    assert bench.check_fractions(attempts) == ";".join(["0.6000"] * len(attempts))


def test_remeasure_pairs_each_result_with_the_original_and_records_a_floor(monkeypatch, tmp_path):
    from ttmpd.pruning import apply_plan, channel_groups, random_plan

    bench = _load("ttmpd_vs_baselines", monkeypatch)
    torch.manual_seed(0)
    net, x = ResidualNet().eval(), torch.randn(1, 3, 8, 8)
    backend = get_backend("fake")
    pruned = apply_plan(net, x, random_plan(net, x, channel_groups(net, x), 0.5, seed=0))
    row = {"backend": "fake", "corruption": "c", "seed": 1, "budget": 0.5, "method": "ttmpd",
           "status": "ok", "original_ms": 99.0, "within_budget": True,
           "remeasured": False}  # fmt: skip
    models = tmp_path / "models"
    models.mkdir()
    torch.save(pruned, models / f"{bench.key_name(row)}.pt")
    path = tmp_path / "p.partial.csv"
    bench.append_row(path, row)
    measure = partial(bench.measure_students, model=net, x=x, backend=backend)
    bench.remeasure(path, models, "fake", measure, "fresh")
    out = pd.read_csv(path).iloc[0]
    expected = backend.measure_model(pruned, x).median_ms / backend.measure_model(net, x).median_ms
    assert out["ratio"] == pytest.approx(expected) and expected < 0.9
    assert out["original_ms"] == pytest.approx(backend.measure_model(net, x).median_ms)
    assert bool(out["remeasured"]) and bool(out["within_budget"]) == (expected <= 0.5 * 1.02)
    assert bench.noise_floors(models, ["fake", "other"]) == {"fake": [0.0, 0.0, 0.0]}
    assert bench.remeasured_in(models, ["fake", "other"]) == {"fake": "fresh"}


def test_the_judge_measures_from_the_saved_files_alone(monkeypatch, tmp_path):
    """``judge_job`` (what ``--remeasure-in fresh`` runs in a spawned process) loads the
    shipped checkpoint and the saved student itself and measures the pair as
    ``measure_students`` does in the run's process; a judge that measured some other model
    (or the original twice) would not read the prune's fraction."""
    from ttmpd.pruning import apply_plan, channel_groups, random_plan

    bench = _load("ttmpd_vs_baselines", monkeypatch)
    model, _, _, backend, x = bench.protocol_model("resnet20_mnist", "fake")
    pruned = apply_plan(model, x, random_plan(model, x, channel_groups(model, x), 0.5, seed=0))
    torch.save(pruned, tmp_path / "a.pt")
    pairs, floor = bench.judge_job("resnet20_mnist", "fake", [tmp_path / "a.pt"])
    here, _ = bench.measure_students([tmp_path / "a.pt"], model, x, backend)
    assert np.allclose(pairs, here) and floor == [0.0, 0.0, 0.0]
    assert pairs[0][1] / pairs[0][0] < 0.9


def test_paired_passes_price_each_variant_on_the_originals_time_base(monkeypatch):
    """``measure_passes``: paired fractions times the original's median latency equal the
    models' own latencies on a device that computes them (the fake backend), in order,
    and the unpruned model is its own fraction 1."""
    from ttmpd.pruning import channel_groups

    lp = _load("latency_prediction", monkeypatch)
    backend = get_backend("fake")
    net, x = ResidualNet().eval(), torch.randn(1, 3, 8, 8)
    _, variants = lp.pruned_variants(net, x, channel_groups(net, x), 4, seed=3)
    models = [net, *variants]
    paired = lp.measure_passes(backend, net, models, x, "paired")
    blocked = lp.measure_passes(backend, net, models, x, "blocked")
    assert paired.shape == blocked.shape == (lp.PASSES, len(models))
    truth = [backend.measure_model(m, x).median_ms for m in models]
    np.testing.assert_allclose(paired, np.tile(truth, (lp.PASSES, 1)), rtol=1e-9)
    np.testing.assert_allclose(blocked, paired, rtol=1e-9)
    assert len(set(np.round(truth, 9))) > 2  # the variants really differ


def _pair_result(backend: str, name: str) -> dict:
    """What ``pair_job`` returns, with made-up numbers (for the resume test)."""
    values = np.array([1.0, 2.0])
    return {
        "rows": [{"backend": backend, "model": name, "method": "(c) ttmpd", "within10_pct": 50.0}],
        "info": {"backend": backend, "model": name},
        "cv": [
            {
                "backend": backend,
                "model": name,
                "regressor": "gbr",
                "mape_pct": 5.0,
                "within10_pct": 90.0,
                "fit_s": 0.1,
            }
        ],
        "savings": {"backend": backend, "model": name, "cold_per_s": 1.0},
        "scatter": {"measured": values, "ttmpd": values, "flops": values, "lut": values},
        "variants": pd.DataFrame({"backend": [backend], "model": [name], "measured_ms": [1.0]}),
    }


def test_an_interrupted_latency_run_resumes_its_finished_pairs(monkeypatch, tmp_path):
    """Pairs take tens of minutes each: a second run with the same arguments measures only
    the pairs the first did not finish, then drops what it kept."""
    lp = _load("latency_prediction", monkeypatch)
    calls = []

    def pair_job(backend, name, *args):
        calls.append(name)
        if name == "resnet56" and calls.count("resnet56") == 1:
            raise KeyboardInterrupt  # the first run is stopped on its second pair
        return _pair_result(backend, name)

    monkeypatch.setattr(lp, "pair_job", pair_job)
    out = tmp_path / "lp"
    argv = ["--backends", "fake", "--models", "resnet18", "resnet56", "--same-process",
            "--variants", "4", "--out", str(out)]  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        lp.main(argv)
    assert len(list(lp.partial_dir(out).glob("*.pkl"))) == 1  # resnet18 kept
    assert lp.main(argv) == 0
    assert calls == ["resnet18", "resnet56", "resnet56"]  # resnet18 was not measured again
    frame = pd.read_csv(out.with_suffix(".csv"))
    assert sorted(frame["model"]) == ["resnet18", "resnet56"]
    assert not lp.partial_dir(out).exists()
    # other arguments are another job: nothing kept is reused for them
    job = ("fake", "resnet18", 4, 8, 0, lp.GRID, "paired")
    lp.save_partial(out, job, {"x": 1})
    assert lp.load_partial(out, job) == {"x": 1}
    assert lp.load_partial(out, ("fake", "resnet18", 5, 8, 0, lp.GRID, "paired")) is None


def test_fresh_passes_measure_the_pairs_own_variants_in_order(tmp_path, monkeypatch):
    """``--measure-in fresh`` measures in another process what the pair built here: the
    calibration variants (aligned from the pair's LUT), then the test variants, each
    rebuilt from its seed. On the fake device, whose latency is a function of the
    architecture, both give the same figures."""
    from ttmpd.lut import LatencyPredictor, profile_model
    from ttmpd.pruning import calibration_round_to, calibration_variants, channel_groups

    lp = _load("latency_prediction", monkeypatch)
    monkeypatch.setitem(lp.MODELS, "tiny", ("tiny", (1, 3, 8, 8)))
    monkeypatch.setattr(lp, "load_model", lambda spec: ResidualNet())
    torch.manual_seed(0)
    net = ResidualNet().eval()
    x = lp.example_input(net, (1, 3, 8, 8), seed=2)
    backend = get_backend("fake")
    lut = tmp_path / "t.parquet"
    table = profile_model(net, x, backend, lut, progress=False).table
    aligned = calibration_round_to(LatencyPredictor().fit(table))
    cal = calibration_variants(net, x, 3, 0, aligned)
    _, tests = lp.pruned_variants(net, x, channel_groups(net, x), 4, seed=2)
    here = lp.measure_passes(backend, net, cal + tests, x, "paired")
    there = np.array(lp.fresh_passes("fake", "tiny", 4, 3, 2, "paired", str(lut)))
    assert there.shape == here.shape == (lp.PASSES, len(cal) + 4)
    np.testing.assert_allclose(there, here, rtol=1e-9)
    assert len(set(np.round(here[0], 9))) > 3  # the variants really differ


def test_with_several_processes_the_truth_is_what_the_others_read(monkeypatch):
    """``--processes 3``: the first process calibrates; the test variants' truth is the
    median over the other two, and each variant's spread is its slowest process over its
    fastest. One process does both, as before."""
    lp = _load("latency_prediction", monkeypatch)
    base = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.2, 3.0, 4.0], [1.0, 2.1, 3.0, 4.0]])
    runs = [base, 1.1 * base, 1.3 * base]  # passes x (1 calibration + 3 test variants)
    cal_ms, consensus, truth, per_process = lp.process_truth(runs, n_cal=1)
    np.testing.assert_allclose(cal_ms, [1.0])  # the calibrating process's own median
    np.testing.assert_allclose(consensus, cal_ms)
    np.testing.assert_allclose(truth, 1.2 * np.array([2.1, 3.0, 4.0]))
    np.testing.assert_allclose(per_process[0], [2.1, 3.0, 4.0])
    np.testing.assert_allclose(lp.process_spread_pct(per_process), [30.0] * 3)
    cal_ms, _, truth, _ = lp.process_truth(runs[:1], n_cal=1)
    np.testing.assert_allclose(truth, [2.1, 3.0, 4.0])
    # --calibrate-processes 2 of 4: the calibration is the median of the first two, the
    # truth the median of the last two
    runs = [base, 1.1 * base, 1.3 * base, 1.5 * base]
    cal_ms, consensus, truth, _ = lp.process_truth(runs, n_cal=1, calibrating=2)
    np.testing.assert_allclose(cal_ms, [1.0])
    np.testing.assert_allclose(consensus, [1.05])
    np.testing.assert_allclose(truth, 1.4 * np.array([2.1, 3.0, 4.0]))
    with pytest.raises(ValueError):
        lp.process_truth(runs, n_cal=1, calibrating=4)
    with pytest.raises(SystemExit):
        lp.main(["--processes", "3", "--calibrate-processes", "3"])
    with pytest.raises(SystemExit):
        lp.main(["--processes", "3", "--measure-in", "profiling"])


def test_check_bias_measures_the_prune_both_ways_and_the_student(monkeypatch, tmp_path):
    """``check_bias``: per kept prune, the check's early-stopping reading (the band's
    edges passed), a full one and the fine-tuned student's, and their ratios in %."""
    bench = _load("check_bias", monkeypatch)
    row = {"backend": "torch-cpu", "corruption": "motion_blur", "seed": 0, "budget": 0.5,
           "method": "ttmpd", "ratio": 0.55, "check_fractions": "0.5400;0.4800"}  # fmt: skip
    name = bench.key_name(row)
    torch.save(nn.Linear(2, 2), tmp_path / f"{name}.pruned.pt")
    torch.save(nn.Linear(2, 3), tmp_path / f"{name}.pt")  # the student: another shape
    seen = []

    def measure(original, model, x, backend, thresholds=()):
        seen.append(tuple(thresholds))
        if thresholds:
            return 2.0, 2.0 * 0.48  # the check reads the prune low
        return 2.0, 2.0 * (0.5 if model.out_features == 2 else 0.55)

    monkeypatch.setattr(bench, "measure_beside", measure)
    frame = bench.readings([row], tmp_path, "original", "x", "backend", repeats=2)
    assert len(frame) == 6 and list(frame["protocol"][:3]) == list(bench.PROTOCOLS)
    assert seen[0] == pytest.approx((0.45, 0.51)) and seen[1] == seen[2] == ()
    table = bench.summary(frame, [row])
    assert table.loc[0, "full_vs_check_pct"] == pytest.approx(100 * (0.5 / 0.48 - 1))
    assert table.loc[0, "student_vs_full_pct"] == pytest.approx(10.0)
    assert table.loc[0, "run_check"] == "0.5400;0.4800"


def test_the_results_name_the_solve_the_ttmpd_rows_ran(monkeypatch):
    """The metadata says which knapsack solve ttmpd's rows come from: a run with the
    relinearized default must not be labelled with the plain tightened solve."""
    from ttmpd.pruning import SearchConfig

    bench = _load("ttmpd_vs_baselines", monkeypatch)
    assert bench.ttmpd_solve(SearchConfig(budget=0.5, relinearize_rounds=0)) == "tightened"
    relinearized = bench.ttmpd_solve(SearchConfig(budget=0.5, relinearize_rounds=2))
    assert relinearized == "tightened, relinearized (2 rounds)"
    default = bench.search_config("ttmpd", 0.5, 0, bench.GroupOptions())
    assert str(default.relinearize_rounds) in bench.ttmpd_solve(default)
