import json

import pytest

from ttmpd.cli import main
from ttmpd.pipeline import STAGES


@pytest.mark.slow
def test_demo_runs_the_whole_job_then_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--json", "--no-progress"]) == 0
    first = json.loads(capsys.readouterr().out)["stages"]
    assert list(first) == [name for name, _ in STAGES]
    assert (out / "stream.npz").is_file() and (out / "corruptions.png").is_file()
    assert (out / "report.md").is_file() and (out / "model.onnx").is_file()
    assert first["lut"]["measured"] > 50
    assert first["measure"]["final_ms"] < first["measure"]["original_ms"]
    assert first["evaluate"]["accuracy_final"] > first["evaluate"]["accuracy_pruned"]
    assert main(["demo", "--out", str(out), "--json", "--no-progress"]) == 0
    again = json.loads(capsys.readouterr().out)["stages"]
    assert again == first  # nothing redone
