import json
from dataclasses import replace

import torch
from nets import ResidualNet

from ttmpd.cli import main
from ttmpd.lut import LatencyTable, profile_model
from ttmpd.profiler import GridConfig, get_backend

FACTORY = "from nets import ResidualNet\n\ndef build():\n    return ResidualNet(c=16)\n"


def _fake_lut_and_factory(tmp_path):
    """A fake-device table of ResidualNet(16) and a factory file building that net."""
    lut = tmp_path / "lut.parquet"
    profile_model(ResidualNet(c=16).eval(), torch.randn(1, 3, 16, 16), get_backend("fake"), lut,
                  grid=GridConfig(channel_step=4), progress=False)  # fmt: skip
    factory = tmp_path / "net.py"
    factory.write_text(FACTORY)
    return lut, f"{factory}:build"


def test_fit_then_predict_with_measure(tmp_path, capsys):
    lut, spec = _fake_lut_and_factory(tmp_path)
    assert main(["lut", "fit", str(lut), "--out", str(tmp_path / "p.json"), "--json",
                 "--calibrate", f"{spec}@1,3,16,16", "--calibrate", f"{spec}@1,3,12,12",
                 "--calibrate", f"{spec}@1,3,8,8"]) == 0  # fmt: skip
    fit = json.loads(capsys.readouterr().out)
    assert fit["calibration_models"] == 3 and fit["calibration"]["slope"] > 1.0
    assert fit["calibration_loo_pct"] == []  # too few models for a leave-one-out error
    assert main(["predict", "--model", spec, "--input-shape", "1,3,16,16", "--predictor",
                 str(tmp_path / "p.json"), "--measure", "--json", "--breakdown",
                 "--plot", str(tmp_path / "bars.png")]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    # fake backend: whole model = 1.1 x unit sum + 0.01 ms, every unit an exact LUT hit, so
    # the calibration recovers it exactly
    assert abs(out["error_pct"]) < 0.5  # 2 of 3 calibration models are predicted, not hits
    assert out["calibration"].startswith("saved, calibrated on 3 measured models (too few")
    assert out["lut_hits"] == out["units"] == len(out["breakdown"])
    assert (tmp_path / "bars.png").stat().st_size > 1000


def test_lut_check_exits_1_only_when_rows_drifted_apart(tmp_path, capsys):
    lut = tmp_path / "lut.parquet"
    profile_model(ResidualNet(c=16).eval(), torch.randn(1, 3, 16, 16), get_backend("fake"), lut,
                  grid=GridConfig(channel_step=4), progress=False)  # fmt: skip
    assert main(["lut", "check", str(lut), "--rounds", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "ok"
    table = LatencyTable.load(lut)
    frame = table.frame.copy()
    frame["latency_ms"] *= 1.4  # the whole table measured on a faster day
    LatencyTable(frame, table.meta).save(lut)
    assert main(["lut", "check", str(lut), "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "drifted" in out and "0.71x" in out and "calibration" in out
    frame.loc[frame.index[::2], "latency_ms"] *= 1.5  # and half of it on another
    LatencyTable(frame, table.meta).save(lut)
    assert main(["lut", "check", str(lut), "--rounds", "1"]) == 1
    assert "re-profile" in capsys.readouterr().out


def test_predict_from_a_lut_calibrates_on_the_spot_or_says_it_does_not(tmp_path, capsys):
    lut, spec = _fake_lut_and_factory(tmp_path)
    base = ["predict", "--model", spec, "--input-shape", "1,3,16,16", "--lut",
            str(lut), "--measure", "--json"]  # fmt: skip
    assert main([*base, "--calibrate-variants", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the fake device is 1.1 x unit sum + 0.01 ms: every held-out model is predicted well
    line = out["calibration"]
    assert line.startswith("calibrated on 5 measured models")
    assert "; leave-one-out error median " in line
    worst = float(line.rsplit("worst ", 1)[1].rstrip("%"))
    assert 0 <= worst < 2
    assert main([*base, "--uncalibrated"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["calibration"].startswith("UNCALIBRATED")
    assert raw["predicted_ms"] == raw["unit_sum_ms"]
    assert raw["error_pct"] < -5  # the plain sum misses the fake device's 1.1x + 0.01 ms
    assert abs(out["error_pct"]) < abs(raw["error_pct"]) / 2  # calibration closes most of it


def test_lut_show_prints_the_probed_device_rules(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TTMPD_FAKE_BLOCK", "8")
    lut = tmp_path / "lut.parquet"
    profile_model(ResidualNet(c=16).eval(), torch.randn(1, 3, 16, 16), get_backend("fake"), lut,
                  grid=GridConfig(channel_step=4), progress=False)  # fmt: skip
    assert main(["lut", "show", str(lut)]) == 0
    out = capsys.readouterr().out
    assert "device rule: blocked layout: block 8" in out
    assert main(["lut", "show", str(lut), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["device_rules"]["blocked"]["block"] == 8


def test_lut_check_says_when_the_device_is_too_unsteady_to_tell(tmp_path, capsys, monkeypatch):
    from ttmpd.profiler.backends.fake import FakeBackend

    lut = tmp_path / "lut.parquet"
    profile_model(ResidualNet(c=16).eval(), torch.randn(1, 3, 16, 16), get_backend("fake"), lut,
                  grid=GridConfig(channel_step=4), progress=False)  # fmt: skip
    real_measure, calls = FakeBackend.measure, []

    def flipping(self, config, timing=None):  # every other row, every other sweep: 1.5x
        calls.append(config.key)
        measured = real_measure(self, config, timing)
        if len(calls) % 2 == 0 and (len(calls) - 1) // 16 % 2 == 1:  # 16 anchors a sweep
            return replace(measured, median_ms=measured.median_ms * 1.5)
        return measured

    monkeypatch.setattr(FakeBackend, "measure", flipping)
    assert main(["lut", "check", str(lut), "--rounds", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "unsteady" and out["noise"] >= 0.4 and out["bound"] >= 0.8
    assert "idle" in out["advice"]


def test_lut_fit_weight_streaming_choices(tmp_path, capsys, monkeypatch):
    """``--weight-streaming`` reaches the predictor: on a table without a probed streaming
    cost, ``on`` is refused in one line (exit 2, nothing written) and ``fit``/``off`` price
    nothing; on a device with caches, ``fit`` prices the term at the calibration's scale."""
    lut, _ = _fake_lut_and_factory(tmp_path)
    out = tmp_path / "p.json"
    base = ["lut", "fit", str(lut), "--out", str(out), "--json"]
    assert main([*base, "--weight-streaming", "on"]) == 2
    assert "memory_pricing=True" in capsys.readouterr().err and not out.exists()
    for word in ("fit", "off"):
        assert main([*base, "--weight-streaming", word]) == 0
        fit = json.loads(capsys.readouterr().out)
        assert fit["weight_streaming"] == word and fit["weight_streaming_scale"] == 0.0
        assert json.loads(out.read_text())["params"]["memory_pricing"] == {"fit": "fit"}.get(
            word, False
        )
    monkeypatch.setenv("TTMPD_FAKE_CACHE_KIB", "4096")
    from ttmpd.profiler._streaming import streaming_chain

    cached = tmp_path / "cached.parquet"
    profile_model(streaming_chain(256, 2), torch.randn(1, 256, 1, 1), get_backend("fake"),
                  cached, grid=GridConfig(channel_step=16), progress=False)  # fmt: skip
    shapes = [(128, 8), (160, 16), (192, 24), (224, 32), (256, 24), (256, 40)]
    factory = tmp_path / "chains.py"
    factory.write_text(
        "from ttmpd.profiler._streaming import streaming_chain\n"
        + "".join(f"\ndef c{c}_{k}():\n    return streaming_chain({c}, {k})\n" for c, k in shapes)
    )
    calibrate = []
    for c, k in shapes:
        calibrate += ["--calibrate", f"{factory}:c{c}_{k}@1,{c},1,1"]
    assert main(["lut", "fit", str(cached), "--out", str(out), "--json", *calibrate]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["weight_streaming"] == "fit" and 0.5 <= fit["weight_streaming_scale"] <= 1.5
