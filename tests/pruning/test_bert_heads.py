"""Attention heads of BERT-style encoders (separate query/key/value, output dense outside
the module) as pruning groups: pruning equals masking, plans, export, search and pricing."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from nets import head_candidates
from torch import nn

from ttmpd.pruning import (
    GroupOptions,
    PrunePlan,
    apply_plan,
    channel_groups,
    plan_from_removed,
    random_plan,
)

SPEC = (
    "hf:bert?num_hidden_layers=2,hidden_size=64,num_attention_heads=4,intermediate_size=128,"
    "vocab_size=200"
)
HEADS = [f"model.encoder.layer.{i}.attention.self#heads" for i in range(2)]


def needs_transformers(test):
    skip = pytest.mark.skipif(
        importlib.util.find_spec("transformers") is None,
        reason="transformers not installed (pip install 'ttmpd[hf]')",
    )
    return pytest.mark.hf(skip(test))


@pytest.fixture(scope="module")
def bert():
    from ttmpd.models import load_model

    torch.manual_seed(0)
    return load_model(SPEC).eval()


@pytest.fixture
def ids():
    return torch.randint(0, 200, (1, 16), generator=torch.Generator().manual_seed(0))


def layers(model) -> list:
    return list(model.model.encoder.layer)


def eager(model):
    """A copy of ``model`` using transformers' step-by-step (matmul, softmax) attention."""
    out = copy.deepcopy(model)
    out.model.config._attn_implementation = "eager"
    return out


def masked(
    model, heads: dict[int, list[int]] | None = None, dims: dict[int, list[int]] | None = None
):
    """The unpruned model with the given heads (per layer) cut off: their value rows and
    output-dense columns zeroed; or with the given head dims (in every head) zeroed in
    query, key and value."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for i, layer in enumerate(layers(out)):
            attn = layer.attention.self
            d, h = attn.attention_head_size, attn.num_attention_heads
            cut = [x * d + y for x in (heads or {}).get(i, []) for y in range(d)]
            layer.attention.output.dense.weight[:, cut] = 0
            attn.value.weight[cut] = 0
            attn.value.bias[cut] = 0
            rows = [x * d + y for x in range(h) for y in (dims or {}).get(i, [])]
            for part in (attn.query, attn.key, attn.value):
                part.weight[rows] = 0
                part.bias[rows] = 0
    return out


@needs_transformers
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_pruning_bert_heads_equals_masking_them(bert, ids, implementation):
    model = bert if implementation == "sdpa" else eager(bert)
    groups = channel_groups(model, ids)
    heads = {g.id: g for g in groups if g.unit == "heads"}
    assert sorted(heads) == HEADS
    assert all(g.prunable and g.channels == 4 for g in heads.values())
    layer0 = "model.encoder.layer.0.attention"
    assert heads[HEADS[0]].members == (
        (f"{layer0}.self.query", "out"),
        (f"{layer0}.self.key", "out"),
        (f"{layer0}.self.value", "out"),
        (f"{layer0}.output.dense", "in"),
    )
    # query/key/value no longer form a channel group of their own
    assert not any(g.id.endswith("self.query") for g in groups)
    removed = {HEADS[0]: [1], HEADS[1]: [0, 3]}
    pruned = apply_plan(model, ids, plan_from_removed(groups, removed, model=model))
    a0, a1 = (layer.attention for layer in layers(pruned))
    assert (a0.self.num_attention_heads, a0.self.all_head_size) == (3, 48)
    assert (a0.self.query.out_features, a0.self.value.out_features) == (48, 48)
    assert (a0.output.dense.in_features, a0.output.dense.out_features) == (48, 64)
    assert (a1.self.num_attention_heads, a1.self.all_head_size, a1.self.key.out_features) == (
        2,
        32,
        32,
    )
    assert a1.self.attention_head_size == 16 and a1.self.scaling == 16**-0.5
    # the kept heads keep their own weights, in order
    kept = [r for r in range(64) if r // 16 != 1]
    torch.testing.assert_close(a0.self.key.weight, layers(model)[0].attention.self.key.weight[kept])
    with torch.no_grad():
        want, got = masked(model, heads={0: [1], 1: [0, 3]})(ids), pruned(ids)
        wrong = masked(model, heads={0: [2], 1: [0, 3]})(ids)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(wrong, want, atol=1e-4)  # the test can tell heads apart


@needs_transformers
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_pruning_bert_head_dims_keeps_the_logits_scale(bert, ids, implementation):
    model = bert if implementation == "sdpa" else eager(bert)
    assert not any(g.unit == "head_dims" for g in channel_groups(model, ids))  # opt in
    groups = channel_groups(model, ids, options=GroupOptions(head_dims=True))
    dims = {g.id: g for g in groups if g.unit == "head_dims"}
    assert sorted(dims) == [h.replace("#heads", "#head_dims") for h in HEADS]
    assert all(g.prunable and g.channels == 16 for g in dims.values())
    cut = [0, 5, 6, 15]
    plan = plan_from_removed(groups, {"model.encoder.layer.1.attention.self#head_dims": cut})
    pruned = apply_plan(model, ids, plan)
    attn = layers(pruned)[1].attention
    assert (attn.self.attention_head_size, attn.self.all_head_size) == (12, 48)
    assert (attn.self.num_attention_heads, attn.self.query.out_features) == (4, 48)
    assert attn.output.dense.in_features == 48 and attn.self.scaling == 16**-0.5
    with torch.no_grad():
        torch.testing.assert_close(
            pruned(ids), masked(model, dims={1: cut})(ids), atol=1e-5, rtol=1e-4
        )


@needs_transformers
def test_random_bert_plan_round_trips_applies_and_exports(bert, ids, tmp_path):
    groups = channel_groups(bert, ids)
    plan = random_plan(bert, ids, groups, target_ratio=0.5, seed=1)
    assert set(HEADS) <= set(plan.keep)
    loaded = PrunePlan.from_json(plan.to_json(tmp_path / "plan.json"))
    assert loaded == plan
    pruned = apply_plan(bert, ids, loaded)
    for i, layer in enumerate(layers(pruned)):
        heads = len(plan.keep[HEADS[i]])
        assert layer.attention.self.num_attention_heads == heads
        assert layer.attention.output.dense.in_features == 16 * heads
        mlp = len(plan.keep[f"model.encoder.layer.{i}.intermediate.dense"])
        assert layer.intermediate.dense.out_features == mlp == layer.output.dense.in_features
    assert sum(len(plan.keep[h]) for h in HEADS) < 8  # the plan did remove heads
    with torch.no_grad():
        want = pruned(ids)
    assert want.shape == (1, 16, 64)
    ort = pytest.importorskip("onnxruntime")
    from ttmpd.profiler.backends.ort import export_onnx

    session = ort.InferenceSession(export_onnx(pruned, (ids,)), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x0": ids.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-3)


def _fit_fake_lut(model, x, tmp_path):
    from ttmpd.lut import LatencyPredictor, profile_model
    from ttmpd.profiler import GridConfig, get_backend

    grid = GridConfig(channel_step=4, off_grid_per_unit=4)
    table = profile_model(model, x, get_backend("fake"), tmp_path / "lut.parquet",
                          progress=False, grid=grid).table  # fmt: skip
    return table, LatencyPredictor().fit(table)


@needs_transformers
@pytest.mark.filterwarnings("ignore:.*have no latency unit")
@pytest.mark.parametrize("fusion", ["none", "none+attention-parts"])
def test_bert_head_pricing_matches_the_predictor_on_the_pruned_model(
    bert, ids, tmp_path, fusion, monkeypatch
):
    from ttmpd.profiler import extract_units
    from ttmpd.profiler.backends.fake import FakeBackend
    from ttmpd.pruning import SearchConfig
    from ttmpd.pruning._problem import SearchProblem

    monkeypatch.setattr(FakeBackend, "fusion", fusion)  # fused sdpa, or matmul/softmax/matmul
    table, predictor = _fit_fake_lut(bert, ids, tmp_path)
    assert table.meta.fusion == fusion
    calib = torch.randint(0, 200, (4, 16), generator=torch.Generator().manual_seed(1))
    problem = SearchProblem(bert, ids, predictor, calib, SearchConfig(budget=0.9, progress=False))
    heads = [g for g in problem.prunable if g.unit == "heads"]
    assert sorted(g.id for g in heads) == HEADS
    module = HEADS[0].removesuffix("#heads")
    core = [u for u in extract_units(bert, ids, predictor.fusion_).units
            if u.config.uses_heads and u.name.split("#")[0] == module]  # fmt: skip
    assert core and all(u.config.heads == 4 for u in core)  # the attention core is priced too
    base = problem.latency([{}])[0]
    for group in heads:
        for k in (1, 3):
            plan = plan_from_removed(problem.groups, {group.id: list(range(k))})
            pruned = apply_plan(bert, ids, plan)
            whole = predictor.predict_model(pruned, ids).total_ms
            priced = problem.latency([{group.id: k}])[0]
            assert priced == pytest.approx(whole, rel=1e-6) and priced < base
    # the priced shrink of the attention core and the dense layers matches the pruned model
    pruned = apply_plan(bert, ids, plan_from_removed(problem.groups, {HEADS[0]: [0, 2]}))
    before = extract_units(bert, ids, predictor.fusion_).units
    after = {u.name: u.config for u in extract_units(pruned, ids, predictor.fusion_).units}
    removed = problem.pricing.removed_channels([{HEADS[0]: 2}])[0]
    shrunk = 0
    for i, unit in enumerate(before):
        c = unit.config
        kept = (c.in_channels - removed[i, 0], c.out_channels - removed[i, 1])
        assert kept == (after[unit.name].in_channels, after[unit.name].out_channels), unit.name
        shrunk += kept != (c.in_channels, c.out_channels)
    assert shrunk == 4 + len(core)  # query, key, value, output dense and the core units


@needs_transformers
@pytest.mark.filterwarnings("ignore:.*have no latency unit")
def test_latency_search_prunes_bert_heads(bert, ids, tmp_path):
    from ttmpd.pruning import SearchConfig, prune

    _, predictor = _fit_fake_lut(bert, ids, tmp_path)
    calib = torch.randint(0, 200, (8, 16), generator=torch.Generator().manual_seed(1))
    result = prune(bert, ids, predictor, calib, SearchConfig(budget=0.8, progress=False))
    assert result.predicted_latency_ms <= result.target_latency_ms + 1e-9
    heads = head_candidates(result)
    assert heads and all(r["predicted_latency_ms"] < result.base_latency_ms for r in heads)
    whole = predictor.predict_model(result.model, ids).total_ms
    assert whole == pytest.approx(result.predicted_latency_ms, rel=1e-6)
    with torch.no_grad():
        assert result.model(ids).shape == (1, 16, 64)


class _SelfAttention(nn.Module):
    """BERT's self-attention written out (no transformers): q, k, v of H*D rows."""

    def __init__(self, width: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.num_attention_heads = heads
        self.attention_head_size = width // heads
        self.all_head_size = width
        self.scaling = self.attention_head_size**-0.5
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (*x.shape[:-1], -1, self.attention_head_size)
        q, k, v = (p(x).view(shape).transpose(1, 2) for p in (self.query, self.key, self.value))
        out = nn.functional.scaled_dot_product_attention(q, k, v, scale=self.scaling)
        return out.transpose(1, 2).reshape(*x.shape[:-1], -1)


class _TwoReaders(nn.Module):
    """Self-attention whose context is read by ``readers`` linear layers."""

    def __init__(self, readers: int) -> None:
        super().__init__()
        self.attention = _SelfAttention()
        self.readers = nn.ModuleList(nn.Linear(32, 32) for _ in range(readers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.attention(x)
        return x + sum(r(context) for r in self.readers)


def test_a_bert_layout_without_transformers_finds_its_one_projection():
    torch.manual_seed(0)
    model = _TwoReaders(readers=1).eval()
    x = torch.randn(2, 8, 32)
    groups = {g.id: g for g in channel_groups(model, x)}
    heads = groups["attention#heads"]
    assert heads.prunable and heads.channels == 4
    assert ("readers.0", "in") in heads.members
    pruned = apply_plan(model, x, plan_from_removed(list(groups.values()), {heads.id: [3]}))
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference.readers[0].weight[:, 24:] = 0
        torch.testing.assert_close(pruned(x), reference(x), atol=1e-5, rtol=1e-4)
    assert pruned.attention.num_attention_heads == 3 and pruned.attention.all_head_size == 24


def test_heads_read_by_two_layers_are_reported_not_pruned():
    model = _TwoReaders(readers=2).eval()
    heads = {g.id: g for g in channel_groups(model, torch.randn(2, 8, 32))}["attention#heads"]
    assert not heads.prunable
    assert "2 linear layers (readers.0, readers.1) read its heads" in heads.reason


@pytest.mark.parametrize("layer", ["attention.key", "readers.0"])
def test_ignoring_a_part_or_the_projection_keeps_the_heads(layer):
    model = _TwoReaders(readers=1).eval()
    x = torch.randn(2, 8, 32)
    heads = {g.id: g for g in channel_groups(model, x, ignored=[layer])}["attention#heads"]
    assert not heads.prunable and heads.reason == f"layer {layer} is ignored"
