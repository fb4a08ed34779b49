import json

import pytest

from ttmpd.cli import main
from ttmpd.lut import LatencyTable


@pytest.mark.slow
def test_demo_builds_stream_and_luts_then_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--json", "--no-progress"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (out / "stream.npz").is_file() and (out / "corruptions.png").is_file()
    backends = {b["backend"]: b for b in first["backends"]}
    assert "torch-cpu" in backends
    for b in backends.values():
        table = LatencyTable.load(b["lut_path"])
        assert len(table) == b["rows"] == b["measured"] > 50
        assert b["model_ms"] > 0 and b["lut_sum_ms"] > 0
    assert main(["demo", "--out", str(out), "--json", "--no-progress"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert all(b["measured"] == 0 for b in again["backends"])  # nothing re-measured
