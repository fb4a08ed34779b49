import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nets import ResidualNet

from ttmpd.errors import InputError, LutError
from ttmpd.lut import SCHEMA_VERSION, LatencyTable, make_row, profile_model
from ttmpd.profiler import BackendConfig, Timing, UnitConfig, get_backend


def fake_table(tmp_path, example_input, threads=1, name="t.parquet") -> LatencyTable:
    backend = get_backend("fake", BackendConfig(threads=threads))
    out = tmp_path / name
    return profile_model(
        ResidualNet().eval(), example_input, backend, out, progress=False, model_name="res"
    ).table


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_keeps_rows_types_and_metadata(tmp_path, example_input, suffix):
    table = fake_table(tmp_path, example_input)
    path = table.save(tmp_path / f"copy{suffix}")
    loaded = LatencyTable.load(path)
    pd.testing.assert_frame_equal(loaded.frame, table.frame)
    assert loaded.meta == table.meta
    assert loaded.meta.models == ("res",) and loaded.meta.backend == "fake"
    assert not list(tmp_path.glob(".*.tmp"))


def test_lookup_and_with_rows(tmp_path, example_input):
    table = fake_table(tmp_path, example_input)
    first = table.configs()[0]
    assert table.lookup(first) == pytest.approx(table.frame["latency_ms"].iat[0])
    unseen = UnitConfig("conv", 1, 3, 5, 16, 16, 16, 16, 3, 3, 1, 1, 1, 1)
    assert table.lookup(unseen) is None
    timing = Timing(0.5, 0.4, 0.6, 9, 1, 0.4, False, 0.1)
    bigger = table.with_rows([make_row(unseen, timing), make_row(first, timing)])
    assert len(bigger) == len(table) + 1  # the existing key is not duplicated
    assert bigger.lookup(unseen) == 0.5 and bigger.lookup(first) == table.lookup(first)


def test_schema_version_mismatch_is_refused(tmp_path, example_input):
    table = fake_table(tmp_path, example_input)
    path = table.save(tmp_path / "t.csv")
    lines = path.read_text().splitlines(keepends=True)
    meta = json.loads(lines[0].removeprefix("# ttmpd-lut "))
    meta["schema_version"] = SCHEMA_VERSION + 1
    path.write_text("# ttmpd-lut " + json.dumps(meta) + "\n" + "".join(lines[1:]))
    with pytest.raises(LutError, match="upgrade ttmpd"):
        LatencyTable.load(path)


def test_foreign_corrupted_and_tampered_files(tmp_path, example_input):
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    with pytest.raises(LutError, match="not a ttmpd latency table"):
        LatencyTable.load(foreign)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"\x00not parquet at all" * 10)
    with pytest.raises(LutError, match="not a valid Parquet"):
        LatencyTable.load(garbage)
    plain_csv = tmp_path / "plain.csv"
    plain_csv.write_text("a,b\n1,2\n")
    with pytest.raises(LutError, match="missing the '# ttmpd-lut' line"):
        LatencyTable.load(plain_csv)
    table = fake_table(tmp_path, example_input)
    path = table.save(tmp_path / "t.csv")
    text = path.read_text().splitlines()
    header = text[1].split(",")
    row = text[2].split(",")
    row[header.index("in_channels")] = "999"
    path.write_text("\n".join([text[0], text[1], ",".join(row), *text[3:]]) + "\n")
    with pytest.raises(LutError, match="does not match its columns"):
        LatencyTable.load(path)
    with pytest.raises(LutError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.parquet")
    with pytest.raises(InputError, match="unknown table format"):
        LatencyTable.load(tmp_path / "t.txt")


def test_merge_same_device_unions_and_keeps_steadier_rows(tmp_path, example_input):
    a = fake_table(tmp_path, example_input, name="a.parquet")
    first = a.configs()[0]
    extra = UnitConfig("conv", 1, 3, 5, 16, 16, 16, 16, 3, 3, 1, 1, 1, 1)
    noisy = Timing(9.0, 1.0, 20.0, 9, 1, 2.1, True, 0.1)
    b = LatencyTable.empty(a.fingerprint).with_rows(
        [make_row(extra, noisy), make_row(first, noisy)], models=["other"]
    )
    merged = a.merge(b)
    assert len(merged) == len(a) + 1
    assert merged.lookup(first) == a.lookup(first)  # steadier measurement wins
    assert merged.meta.models == ("res", "other")


def test_merge_refuses_other_devices_unless_forced(tmp_path, example_input):
    a = fake_table(tmp_path, example_input, threads=1, name="a.parquet")
    b = fake_table(tmp_path, example_input, threads=2, name="b.parquet")
    with pytest.raises(LutError, match=r"threads \(1 vs 2\).*--force"):
        a.merge(b)
    assert len(a.merge(b, force=True)) == len(a)


def test_invalid_values_are_rejected(tmp_path, example_input):
    table = fake_table(tmp_path, example_input)
    frame = table.frame.copy()
    frame.loc[0, "latency_ms"] = -1.0
    with pytest.raises(LutError, match="non-positive"):
        LatencyTable(frame, table.meta)
    with pytest.raises(LutError, match="duplicate keys"):
        LatencyTable(pd.concat([table.frame, table.frame.head(1)]), table.meta)
    with pytest.raises(LutError, match="lacks columns"):
        LatencyTable(table.frame.drop(columns=["p90_ms"]), table.meta)


def test_saved_tables_get_normal_file_permissions(tmp_path, example_input):
    import os

    table = fake_table(tmp_path, example_input)
    mask = os.umask(0)
    os.umask(mask)
    path = table.save(tmp_path / "perm.parquet")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
