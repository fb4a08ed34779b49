"""Profile -> fit -> predict on a small ViT with the deterministic fake backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_nets import TinyViT

from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.profiler import extract_units, get_backend
from ttmpd.profiler.backends.fake import fake_latency_ms


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    torch.manual_seed(0)
    backend = get_backend("fake")
    model, x = (
        TinyViT(image=16, patch=4, dim=64, heads=4, mlp=128).eval(),
        torch.randn(1, 3, 16, 16),
    )
    path = tmp_path_factory.mktemp("vit") / "lut.parquet"
    table = profile_model(model, x, backend, path, progress=False, rounds=1).table
    return backend, table, LatencyPredictor().fit(table), x


def test_the_table_holds_token_and_attention_units(fitted):
    _, table, _, _ = fitted
    f = table.frame
    assert {"layernorm", "sdpa", "linear", "cat"} <= set(f["op"])
    assert set(f.loc[f["op"] == "sdpa", "heads"]) == {1, 2, 3, 4}
    assert set(f.loc[f["layout"] == "nhwc", "in_h"]) == {17}  # tokens never pruned
    assert f.loc[f["op"] == "layernorm", "in_channels"].nunique() > 2  # the width is


@pytest.mark.parametrize(
    "pruned",
    [
        {"heads": 2, "head_dim": 16},  # half the heads
        {"heads": 3, "head_dim": 16, "mlp": 72},  # heads and MLP width, off the grid
        {"mlp": 40},
        {"dim": 40, "heads": 4, "head_dim": 16},  # the embedding width
    ],
    ids=str,
)
def test_pruned_vits_are_predicted_within_ten_percent(fitted, pruned):
    _, _, predictor, x = fitted
    kwargs = {"image": 16, "patch": 4, "dim": 64, "heads": 4, "mlp": 128} | pruned
    model = TinyViT(**kwargs).eval()
    units = extract_units(model, x).units
    truth = sum(fake_latency_ms(u.config) for u in units)
    predicted = predictor.predict_model(model, x, calibrated=False)
    assert not predicted.uncovered
    assert predicted.unit_sum_ms == pytest.approx(truth, rel=0.10)
    per_unit = np.asarray([fake_latency_ms(u.config) for u in units])
    errors = np.abs(predicted.breakdown["latency_ms"].to_numpy() / per_unit - 1)
    assert np.median(errors) < 0.10


def test_channel_groups_and_savings_of_a_vit(fitted):
    from ttmpd.lut import PruneSavings

    _, _, predictor, x = fitted
    model = TinyViT(image=16, patch=4, dim=64, heads=4, mlp=128).eval()
    savings = PruneSavings(predictor, model, x)
    groups = {g.id: g for g in savings.groups.values()}
    mlp, attn = groups["blocks.0.fc1"], groups["blocks.0.attn.qkv"]
    assert mlp.prunable and mlp.channels == 128
    attn_units = {savings.extraction.units[i].config.op for i, _, _ in attn.members}
    assert attn.prunable and "sdpa" in attn_units  # qkv out, attention, proj in: heads
    residual = groups["patch"]  # the embedding width: conv out, class token, norms, adds
    assert residual.prunable and residual.channels == 64
    assert attn.channels == 64 and {f for *_, f in attn.members} == {1, 3}  # qkv: 3 per
    # two of four heads removed in both blocks (32 of 64 attention channels, 96 of qkv's
    # 192 outputs): the latency the predictor prices for the model built with two heads
    smaller = TinyViT(image=16, patch=4, dim=64, heads=2, head_dim=16, mlp=128).eval()
    state = {"blocks.0.attn.qkv": 32, "blocks.1.attn.qkv": 32}
    pruned = predictor.predict_model(smaller, x).total_ms
    assert savings.latencies([state])[0] == pytest.approx(pruned, rel=1e-6)
    assert savings.savings([(attn.id, 32)])[0] > 0


def test_extending_a_table_from_before_the_attention_probe_takes_its_fusion(tmp_path, monkeypatch):
    from ttmpd.lut import LatencyTable
    from ttmpd.profiler import ATTENTION_PARTS
    from ttmpd.profiler.backends.fake import FakeBackend

    model, x = TinyViT(depth=1).eval(), torch.randn(1, 3, 16, 16)
    path = tmp_path / "lut.parquet"
    profile_model(model, x, get_backend("fake"), path, progress=False, rounds=1)
    monkeypatch.setattr(FakeBackend, "fusion", "none" + ATTENTION_PARTS)
    profile_model(model, x, get_backend("fake"), path, progress=False, rounds=1, resume=True)
    table = LatencyTable.load(path)
    assert table.meta.fusion == "none" + ATTENTION_PARTS
    assert {"sdpa", "matmul"} <= set(table.frame["op"])  # both extractions are measured
