"""``ttmpd profile --executor ray``: a grid split across simulated device nodes.

One local Ray cluster for the module; two device types are simulated with custom resources
on this machine: ``fake-a`` with two units (two nodes of type a), ``fake-b`` with one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from nets import ResidualNet

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'ttmpd[ray]'")

from ttmpd.cli import main  # noqa: E402
from ttmpd.lut import LatencyTable  # noqa: E402
from ttmpd.models import save_checkpoint  # noqa: E402

pytestmark = pytest.mark.ray
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    # workers unpickle the nets of tests/nets.py by reference: put tests/ on their path
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", path)
        ray.init(num_cpus=2, resources={"fake-a": 2, "fake-b": 1}, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")  # fmt: skip
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("fleet") / "net.pt"
    torch.manual_seed(0)
    save_checkpoint(path, ResidualNet().eval(), input_shape=(3, 16, 16))
    return path


def _profile(model, out, *extra):
    return ["profile", "--model", str(model), "--backend", "fake", "--channel-step", "4",
            "--off-grid-per-unit", "2", "--rounds", "1", "--no-progress", "--out", str(out),
            *extra]  # fmt: skip


def _rows(path):
    frame = LatencyTable.load(path).frame.drop(columns="measured_at")
    return frame.sort_values("key").reset_index(drop=True)


def test_fleet_tables_equal_one_local_profile_per_device_type(cluster, model, tmp_path, capsys):
    assert main(_profile(model, tmp_path / "local.parquet")) == 0
    capsys.readouterr()
    fleet = ("--executor", "ray", "--device-resource", "fake-a", "--device-resource", "fake-b")
    assert main(_profile(model, tmp_path / "lut.parquet", *fleet, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)["devices"]
    assert [len(summary[d]["shards"]) for d in ("fake-a", "fake-b")] == [2, 1]  # per unit
    assert all(s["measured"] > 0 for s in summary["fake-a"]["shards"])  # both did work
    local = _rows(tmp_path / "local.parquet")
    for device in ("fake-a", "fake-b"):
        pd.testing.assert_frame_equal(_rows(tmp_path / f"lut.{device}.parquet"), local)
    # a rerun with --resume finds every shard done on its node and measures nothing
    assert main(_profile(model, tmp_path / "lut.parquet", *fleet, "--json", "--resume")) == 0
    again = json.loads(capsys.readouterr().out)["devices"]
    assert again["fake-a"]["measured"] == 0 and again["fake-a"]["rows"] == len(local)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ("--device-resource", "fake-c"),
            "no node of the Ray cluster carries fake-c (device resources there: fake-a, fake-b)",
        ),
        (("--device-resource", "fake-a", "--ray-address", "127.0.0.1:1"), "cannot reach"),
        (("--workers", "2"), "fleet profiling needs --executor ray and --device-resource"),
    ],
)
def test_bad_fleet_input_is_one_line_and_writes_nothing(
    cluster, model, tmp_path, capsys, extra, message
):
    executor = () if "--workers" in extra else ("--executor", "ray")
    out = tmp_path / "out" / "lut.parquet"
    assert main(_profile(model, out, *executor, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
