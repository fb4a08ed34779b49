"""Fleet profiling without Ray: shards cover the grid, merging refuses foreign devices."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch
from nets import ResidualNet

from ttmpd.cli import main
from ttmpd.errors import LutError
from ttmpd.executor import LocalExecutor
from ttmpd.lut import FleetRequest, Shard, fleet_outputs, merge_shards, profile_fleet, profile_model
from ttmpd.lut._fleet import ShardTable
from ttmpd.models import save_checkpoint
from ttmpd.profiler import GridConfig, get_backend

X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
GRID = GridConfig(channel_step=4, off_grid_per_unit=2)


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal tables up to row order (measured_at is when the row was measured)."""
    a, b = (f.drop(columns="measured_at").sort_values("key").reset_index(drop=True) for f in (a, b))
    pd.testing.assert_frame_equal(a, b)


def test_shards_split_the_grid_and_merge_into_the_whole_table(tmp_path):
    net = ResidualNet().eval()
    whole = profile_model(net, X, get_backend("fake"), tmp_path / "whole.parquet", grid=GRID,
                          progress=False).table  # fmt: skip
    request = FleetRequest("fake", ("fake-dev",), grid=GRID, rounds=1, workers=3)
    result = profile_fleet(net, X, request, tmp_path / "fleet.parquet", LocalExecutor())
    parts = result.shards["fake-dev"]
    assert [p.shard for p in parts] == [Shard(0, 3), Shard(1, 3), Shard(2, 3)]
    keys = [set(p.table.frame["key"]) for p in parts]
    assert all(k for k in keys) and sum(map(len, keys)) == len(set().union(*keys))  # disjoint
    same_rows(whole.frame, result_table(result, "fake-dev").frame)
    assert result.rows["fake-dev"] == len(whole) == result.measured["fake-dev"]


def result_table(result, device):
    from ttmpd.lut import LatencyTable

    return LatencyTable.load(result.paths[device])


def test_a_shard_from_another_device_is_refused(tmp_path, monkeypatch):
    net = ResidualNet().eval()

    def shard(i, path):
        table = profile_model(net, X, get_backend("fake"), path, grid=GRID, progress=False,
                              shard=Shard(i, 2)).table  # fmt: skip
        return ShardTable("fake-dev", Shard(i, 2), table, len(table), f"node{i}")

    first = shard(0, tmp_path / "a.parquet")
    monkeypatch.setenv("TTMPD_FAKE_BLOCK", "16")  # another device: a blocked conv layout
    second = shard(1, tmp_path / "b.parquet")
    with pytest.raises(LutError, match=r"shard 0 on node0 and shard 1 on node1 differ in "
                       r"provider \( vs fake-block16\)"):  # fmt: skip
        merge_shards([first, second])


def test_fleet_outputs_name_one_table_per_device(tmp_path):
    assert fleet_outputs(tmp_path / "lut.parquet", ["a"]) == {"a": tmp_path / "lut.parquet"}
    assert fleet_outputs(tmp_path / "lut.csv", ["dev:a", "b"]) == {
        "dev:a": tmp_path / "lut.dev_a.csv", "b": tmp_path / "lut.b.csv",
    }  # fmt: skip
    with pytest.raises(LutError, match="shard index"):
        Shard(2, 2)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--executor", "ray", "--device-resource", "fake-a"), "Ray is not installed; install "
         "the ray extra: pip install 'ttmpd[ray]'"),
        (("--ray-address", "10.0.0.1:6379"), "fleet profiling needs --executor ray and"),
    ],
)  # fmt: skip
def test_bad_fleet_input_without_ray_is_one_line(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    save_checkpoint(tmp_path / "net.pt", ResidualNet().eval(), input_shape=(3, 16, 16))
    out = tmp_path / "out" / "lut.parquet"
    argv = ["profile", "--model", str(tmp_path / "net.pt"), "--backend", "fake", "--out",
            str(out), *extra]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()
