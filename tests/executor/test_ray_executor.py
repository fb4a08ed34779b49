"""The Ray executor and ``ttmpd pareto --executor ray`` on one local Ray cluster (2 CPUs).

The cluster is started once for the module; its node carries a test device resource and
the resource of the fake backend's device, so the sweep's measure steps can be placed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from nets import ResidualNet

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'ttmpd[ray]'")

from ttmpd.cli import main  # noqa: E402
from ttmpd.errors import ExecutorError  # noqa: E402
from ttmpd.executor import (  # noqa: E402
    Job,
    JobJournal,
    LocalExecutor,
    RayConfig,
    RayExecutor,
    Resources,
    Step,
    peak_concurrency,
    run_jobs,
)
from ttmpd.lut import LatencyPredictor, LatencyTable, profile_model  # noqa: E402
from ttmpd.models import save_checkpoint  # noqa: E402
from ttmpd.profiler import GridConfig, get_backend  # noqa: E402
from ttmpd.pruning import adapt_bn, pareto_sweep  # noqa: E402

pytestmark = pytest.mark.ray
TESTS = Path(__file__).resolve().parents[1]
X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
CALIB = torch.randn(24, 3, 16, 16, generator=torch.Generator().manual_seed(1))
FAKE_DEVICE = "device:" + get_backend("fake").fingerprint().device_id()


@pytest.fixture(scope="module")
def cluster():
    # workers unpickle this module's functions and the nets of tests/nets.py by reference
    here = (str(Path(__file__).parent), str(TESTS), os.environ.get("PYTHONPATH", ""))
    path = os.pathsep.join(p for p in here if p)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", path)
        ray.init(num_cpus=2, resources={"device:test": 1, FAKE_DEVICE: 1},
                 include_dashboard=False, log_to_driver=False, logging_level="ERROR")  # fmt: skip
    yield
    ray.shutdown()


def _sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def _compute_in_pairs(x, folder):
    """Wait (up to 60 s) until two compute steps have started: they must run side by side."""
    Path(folder, f"c{x}").touch()
    deadline = time.time() + 60
    while len(list(Path(folder).glob("c*"))) < 2 and time.time() < deadline:
        time.sleep(0.02)
    return x


def _measure_sleep(previous, x, folder):
    time.sleep(0.3)
    return previous + x


def test_measuring_steps_never_share_a_device_while_compute_runs_in_parallel(cluster, tmp_path):
    compute = Step(_compute_in_pairs, Resources(cpus=1), "compute")
    measure = Step(_measure_sleep, Resources(cpus=1, device="device:test"), "measure")
    jobs = [Job(f"j{i}", (compute, measure), (i, str(tmp_path))) for i in range(4)]
    record = run_jobs(RayExecutor(), jobs)
    assert record.values == {f"j{i}": 2 * i for i in range(4)}
    measures = [s for s in record.spans if s.step == "measure"]
    computes = [s for s in record.spans if s.step == "compute"]
    assert len(measures) == 4 and peak_concurrency(measures) == 1
    assert peak_concurrency(computes) == 2  # as many as the 2 CPUs hold
    for job in record.values:  # each job measured after its own compute step
        c, m = (next(s for s in spans if s.job == job) for spans in (computes, measures))
        assert m.start_s >= c.end_s


def _die_once(marker: str, x):
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)  # the worker dies as if its node went away
    return x + 1


def test_a_task_killed_more_often_than_retried_is_reported_and_resumed(cluster, tmp_path):
    jobs = [Job("dies-once", (Step(_die_once, Resources(cpus=0.5)),), (str(tmp_path / "m"), 41)),
            Job("fine", (Step(_sleep_then, Resources(cpus=0.5)),), (7, 0.0))]  # fmt: skip
    journal = JobJournal(tmp_path / "j.journal", {"test": 1})
    executor = RayExecutor(RayConfig(max_retries=0))
    with pytest.raises(ExecutorError, match="1 of 2 jobs failed"):
        run_jobs(executor, jobs, journal)
    assert (tmp_path / "m").exists() and journal.load() == {"fine": 7}  # kept for the rerun
    record = run_jobs(executor, jobs, journal)  # the marker is there now: it lives
    assert record.resumed == 1 and record.values == {"dies-once": 42, "fine": 7}


def _raise(x):
    with open(x, "a") as fh:
        fh.write("attempt\n")
    raise ValueError("bad value 3")


def test_an_exception_of_the_jobs_code_is_reported_not_retried(cluster, tmp_path):
    log = tmp_path / "attempts"
    with pytest.raises(ExecutorError, match=r"j: ValueError: bad value 3"):
        run_jobs(RayExecutor(), [Job("j", (Step(_raise, Resources(cpus=0.5)),), (str(log),))])
    assert log.read_text().count("attempt") == 1


def test_a_device_no_node_carries_fails_before_anything_runs(cluster, tmp_path):
    job = Job("j", (Step(_raise, Resources(device="device:nope")),), (str(tmp_path / "log"),))
    with pytest.raises(ExecutorError, match=r"carries device:nope .*ray start --resources="):
        run_jobs(RayExecutor(), [job])
    greedy = Job("j", (Step(_raise, Resources(cpus=3, device="device:test")),), (str(tmp_path),))
    with pytest.raises(ExecutorError, match="needs 3 CPUs on a node carrying device:test, which "
                       "has at most 2"):  # fmt: skip
        run_jobs(RayExecutor(), [greedy])  # Ray would wait for such a node forever
    assert not (tmp_path / "log").exists()


# ----- the Pareto sweep -----------------------------------------------------------------


class _Agreement:
    """Accuracy = agreement with the unpruned net's labels (picklable for Ray workers)."""

    def __init__(self, labels):
        self.labels = labels

    def __call__(self, model):
        with torch.no_grad():
            return float((model(CALIB).argmax(1) == self.labels).float().mean())


def _fake_ms(model):
    return get_backend("fake").measure_model(model, X).median_ms


@pytest.fixture(scope="module")
def sweep_setup(tmp_path_factory):
    torch.manual_seed(0)
    net = adapt_bn(ResidualNet().eval(), CALIB)
    lut = tmp_path_factory.mktemp("sweep") / "lut.parquet"
    table = profile_model(net, X, get_backend("fake"), lut, progress=False,
                          grid=GridConfig(channel_step=4, off_grid_per_unit=0)).table  # fmt: skip
    with torch.no_grad():
        labels = net(CALIB).argmax(1)
    return net, LatencyPredictor().fit(table), _Agreement(labels), lut


def test_the_sweep_on_ray_gives_the_local_plans_and_rows(cluster, sweep_setup, tmp_path):
    net, predictor, evaluate, _ = sweep_setup
    args = (net, X, predictor, CALIB, evaluate, _fake_ms, [0.6, 0.8], ["ttmpd", "uniform"])
    local = pareto_sweep(*args, progress=False, executor=LocalExecutor())
    journal = JobJournal(tmp_path / "pareto.journal", {"t": 1})
    remote = pareto_sweep(*args, progress=False, executor=RayExecutor(), journal=journal,
                          device=FAKE_DEVICE)  # fmt: skip
    same = ["method", "budget", "plan_id", "predicted_ms", "measured_ms", "accuracy", "on_front"]
    pd.testing.assert_frame_equal(local[same], remote[same])
    assert local["plan_id"].iloc[1:].str.len().eq(12).all()
    assert local["plan_id"].iloc[1:].nunique() > 1  # the plans differ across jobs
    assert len(journal.load()) == 5  # original + 2 x 2, journaled as they finished


class _DieOnceThenMeasure:
    """A measurement whose first call kills its worker, as if the device node died."""

    def __init__(self, marker):
        self.marker = marker

    def __call__(self, model):
        _die_once(self.marker, 0)
        return _fake_ms(model)


def test_a_sweep_whose_measuring_worker_dies_is_retried_and_completes(
    cluster, sweep_setup, tmp_path
):
    net, predictor, evaluate, _ = sweep_setup
    marker = tmp_path / "died"
    frame = pareto_sweep(net, X, predictor, CALIB, evaluate, _DieOnceThenMeasure(str(marker)),
                         [0.8], ["uniform"], progress=False,
                         executor=RayExecutor(RayConfig(max_retries=1)))  # fmt: skip
    assert marker.exists()  # the first attempt died
    assert frame["method"].tolist() == ["original", "uniform"]
    assert frame["measured_ms"].iloc[0] == pytest.approx(_fake_ms(net))


# ----- the CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_files(sweep_setup, tmp_path_factory):
    net, _, _, lut = sweep_setup
    root = tmp_path_factory.mktemp("cli")
    save_checkpoint(root / "net.pt", net, input_shape=(3, 16, 16))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(64, 16, 16, 3), dtype=np.uint8)
    np.savez(root / "stream.npz", images=images, labels=rng.integers(0, 10, 64))
    return root, lut


def _pareto(root, lut, out, *extra):
    return ["pareto", "--model", str(root / "net.pt"), "--data", str(root / "stream.npz"),
            "--lut", str(lut), "--budgets", "0.8", "--methods", "uniform", "--proxy-samples",
            "16", "--calibrate-variants", "0", "--out", str(out), *extra]  # fmt: skip


def test_pareto_cli_on_ray_matches_the_local_run(cluster, cli_files, tmp_path, capsys):
    root, lut = cli_files
    assert main(_pareto(root, lut, tmp_path / "local")) == 0
    assert main(_pareto(root, lut, tmp_path / "ray", "--executor", "ray")) == 0
    local, remote = (pd.read_csv(tmp_path / d / "pareto.csv") for d in ("local", "ray"))
    pd.testing.assert_frame_equal(local.drop(columns="search_s"), remote.drop(columns="search_s"))
    assert (tmp_path / "ray" / "pareto.png").stat().st_size > 1000
    assert not (tmp_path / "ray" / "pareto.journal").exists()  # removed once the CSV is there


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--ray-address", "127.0.0.1:1"), "cannot reach the Ray cluster at 127.0.0.1:1"),
        (("--device-resource", "device:nope"), "no node of the Ray cluster carries device:nope"),
    ],
)
def test_pareto_cli_bad_cluster_input_is_one_line_and_writes_nothing(
    cluster, cli_files, tmp_path, capsys, extra, message
):
    root, lut = cli_files
    assert main(_pareto(root, lut, tmp_path / "out", "--executor", "ray", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_lut_names_the_ray_resource_of_its_device(cli_files, capsys):
    _, lut = cli_files
    assert main(["lut", "show", str(lut)]) == 0
    assert f"Ray resource of its measuring node: {FAKE_DEVICE}" in capsys.readouterr().out
    assert LatencyTable.load(lut).summary()["device_resource"] == FAKE_DEVICE
