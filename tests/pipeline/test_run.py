"""``ttmpd run`` end to end on the shipped ResNet-20 and a small MNIST stream (fake backend:
deterministic latency, so the test is about the pipeline, not the machine)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import ttmpd.pipeline._stages as stages
from ttmpd.base import reference_checkpoint_path
from ttmpd.cli import main
from ttmpd.data import load_mnist
from ttmpd.lut import load_predictor
from ttmpd.models import load_checkpoint

MODEL = str(reference_checkpoint_path())
SMALL = ["--backend", "fake", "--budget", "0.6", "--channel-step", "16",
         "--calibrate-variants", "3", "--finetune-samples", "64", "--proxy-samples", "32",
         "--epochs", "2", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    mnist = load_mnist("test")
    path = tmp_path_factory.mktemp("data") / "stream.npz"
    np.savez(path, images=mnist.images[:240], labels=mnist.labels[:240])
    return path


def _run(out, stream, *extra):
    return main(["run", "--model", MODEL, "--data", str(stream), "--out", str(out),
                 *SMALL, *extra])  # fmt: skip


def test_run_writes_every_artefact_and_meets_the_budget(tmp_path, stream, capsys):
    out = tmp_path / "run"
    assert _run(out, stream, "--json") == 0
    result = json.loads(capsys.readouterr().out)["stages"]
    assert list(result) == [name for name, _ in stages.STAGES]
    files = ("report.md", "model.onnx", "layers.csv", "pareto.png", "layers.png",
             "prune/plan.json", "distill/student.pt", "predictor.json", "lut.parquet")  # fmt: skip
    for f in files:
        assert (out / f).is_file(), f
    assert result["data"] == {**result["data"], "finetune": 64, "held_out": 176}
    # the fake backend's latency is the predictor's ground truth: the budget must hold
    assert result["measure"]["measured_ratio"] <= 0.6 * 1.02
    assert result["measure"]["within_budget"] is True
    # 4 measured models, each predicted by the calibration fitted on the other 3
    fit = result["predictor"]
    assert len(fit["calibration_loo_pct"]) == 4
    worst = fit["calibration_loo_worst_pct"]
    assert worst == max(abs(v) for v in fit["calibration_loo_pct"]) and worst > 0
    # layers.csv lists the units in network order (the predictor's breakdown order)
    predictor, _ = load_predictor(out / "predictor.json")
    order = predictor.predict_model(load_checkpoint(MODEL).model, torch.zeros(1, 1, 28, 28))
    layers = pd.read_csv(out / "layers.csv")
    assert layers["name"].tolist() == order.breakdown["name"].tolist()
    assert layers["name"].tolist() != sorted(layers["name"])  # not alphabetical
    assert result["export"]["argmax_agreement"] == 1.0
    final = load_checkpoint(out / "distill" / "student.pt").model
    base = load_checkpoint(MODEL).model
    assert sum(p.numel() for p in final.parameters()) < sum(p.numel() for p in base.parameters())
    for key in ("accuracy_original", "accuracy_pruned", "accuracy_final"):
        assert 0.0 <= result["evaluate"][key] <= 1.0
    report = (out / "report.md").read_text()
    assert "## Stage times" in report and "pareto.png" in report and "model.onnx" in report
    assert f"predicted each of its 4 measured models from the others within {worst:.1f}%" in report


def test_killed_run_resumes_without_redoing_finished_stages(tmp_path, stream, monkeypatch, capsys):
    out = tmp_path / "run"
    real = dict(stages.STAGES)

    def killed(run):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "STAGES", tuple((n, killed if n == "distill" else f)
                                                for n, f in stages.STAGES))  # fmt: skip
    assert _run(out, stream) == 130
    err = capsys.readouterr().err
    assert "interrupted in stage 'distill'" in err and "--resume" in err
    before = json.loads((out / "run.json").read_text())["stages"]
    assert list(before) == ["data", "lut", "predictor", "prune"]
    plan_mtime = (out / "prune" / "plan.json").stat().st_mtime_ns

    monkeypatch.setattr(stages, "STAGES", tuple(real.items()))
    assert _run(out, stream, "--resume") == 0
    after = json.loads((out / "run.json").read_text())["stages"]
    assert list(after) == list(real)
    for name in before:  # finished stages are untouched
        assert after[name] == before[name]
    assert (out / "prune" / "plan.json").stat().st_mtime_ns == plan_mtime
    assert "done before (resumed)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "1.5"], "budget must be a fraction"),
        (["--method", "magic"], "unknown method"),
        (["--backend", "tpu"], "unknown backend"),
        (["--finetune-samples", "4"], "--finetune-samples must be >= 8"),
        (["--budget-checks", "-1"], "--budget-checks must be >= 0"),
        (["--finetune-samples", "5000"], "must be below the stream size"),
        (["--resume"], "nothing to resume"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, stream, capsys, args, message):
    code = main(["run", "--model", MODEL, "--data", str(stream), "--out", str(tmp_path / "r"),
                 "--backend", "fake", "--no-progress", *args])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_missing_model_and_changed_settings_are_refused(tmp_path, stream, capsys):
    code = main(["run", "--model", str(tmp_path / "none.pt"), "--data", str(stream),
                 "--out", str(tmp_path / "r"), "--backend", "fake"])  # fmt: skip
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    out = tmp_path / "run"
    (out).mkdir()
    (out / "run.json").write_text(json.dumps({"format": "ttmpd-run", "config": {}, "stages": {}}))
    assert _run(out, stream) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert _run(out, stream, "--resume") == 2
    assert "other settings" in capsys.readouterr().err


def test_sigkilled_run_resumes(tmp_path, stream):
    """A real kill (no handler runs): the stages recorded before it are kept as they were."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ttmpd", "run", "--model", MODEL, "--data", str(stream),
           "--out", str(out), *SMALL]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    before: dict = {}
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            before = json.loads((out / "run.json").read_text())["stages"]
        except (OSError, ValueError):
            before = {}
        if len(before) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert before, "the run never recorded a stage"
    assert main(["run", "--model", MODEL, "--data", str(stream), "--out", str(out), *SMALL,
                 "--resume"]) == 0  # fmt: skip
    after = json.loads((out / "run.json").read_text())["stages"]
    assert list(after) == [name for name, _ in stages.STAGES]
    for name, figures in before.items():
        assert after[name] == figures


def test_budget_check_searches_again_when_the_measured_prune_misses(tmp_path, stream, capsys,
                                                                  monkeypatch):  # fmt: skip
    # the fake backend matches its predictor; pretend the first prune measures 40% slower
    real_measure, calls = stages.Run.measure_beside_original, []

    def measure(run, model, thresholds=()):
        original_ms, ms = real_measure(run, model, thresholds)
        calls.append((ms, thresholds))
        return original_ms, ms * 1.4 if len(calls) == 1 else ms

    monkeypatch.setattr(stages.Run, "measure_beside_original", measure)
    assert _run(tmp_path / "run", stream, "--json") == 0
    prune = json.loads(capsys.readouterr().out)["stages"]["prune"]
    first, second = prune["attempts"][:2]
    # the check told the measurement which decision it serves: the budget band's edges
    assert calls[0][1] == pytest.approx((0.6 * 0.9, 0.6 * 1.02))
    assert first["measured_fraction"] == pytest.approx(first["measured_ms"] / first["original_ms"])
    assert first["measured_fraction"] > 1.3 * 0.6  # the inflated measurement
    scaled = first["search_budget"] * 0.97 * 0.6 / first["measured_fraction"]
    assert second["search_budget"] == pytest.approx(scaled, rel=1e-9)
    assert second["measured_fraction"] < first["measured_fraction"]
    assert prune["kept_attempt"] >= 1  # the inflated first prune is not kept
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"Budget check: {len(prune['attempts'])} searches" in report
