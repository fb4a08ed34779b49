"""Attention heads and head dims as pruning groups (timm ViT): pruning equals masking."""

from __future__ import annotations

import copy
import importlib.util
import warnings

import numpy as np
import pytest
import torch
from nets import head_candidates

from ttmpd.pruning import (
    GroupOptions,
    PrunePlan,
    apply_plan,
    channel_groups,
    plan_from_removed,
    random_plan,
)

pytestmark = [
    pytest.mark.zoo,
    pytest.mark.skipif(
        importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("timm") is None,
        reason="torchvision/timm not installed (pip install 'ttmpd[zoo]')",
    ),
]


def small_vit(**kwargs) -> torch.nn.Module:
    from ttmpd.models import load_model

    torch.manual_seed(0)
    model = load_model(
        "timm:vit_tiny_patch16_224?img_size=32,patch_size=8,depth=2,num_classes=10", **kwargs
    ).eval()
    with torch.no_grad():  # timm zero-initialises biases: make every head distinct
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def vit():
    return small_vit()


@pytest.fixture
def x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def masked(
    model, heads: dict[int, list[int]] | None = None, dims: dict[int, list[int]] | None = None
):
    """The unpruned model with the given heads or head dims (per block) zeroed in qkv."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for b, block in enumerate(out.blocks):
            attn = block.attn
            h, d = attn.num_heads, attn.head_dim
            rows = []
            for p in range(3):
                for head in range(h):
                    for dim in range(d):
                        if head in (heads or {}).get(b, []) or dim in (dims or {}).get(b, []):
                            rows.append(p * h * d + head * d + dim)
            attn.qkv.weight[rows] = 0
            attn.qkv.bias[rows] = 0
    return out


@pytest.mark.parametrize("fused", [True, False])
def test_pruning_heads_equals_masking_them(vit, x, fused):
    model = copy.deepcopy(vit)
    for block in model.blocks:
        block.attn.fused_attn = fused
    groups = channel_groups(model, x)
    heads = {g.id: g for g in groups if g.unit == "heads"}
    assert sorted(heads) == ["blocks.0.attn#heads", "blocks.1.attn#heads"]
    assert all(g.prunable and g.channels == 3 for g in heads.values())
    removed = {"blocks.0.attn#heads": [1], "blocks.1.attn#heads": [0, 2]}
    pruned = apply_plan(model, x, plan_from_removed(groups, removed, model=model))
    a0, a1 = pruned.blocks[0].attn, pruned.blocks[1].attn
    assert (a0.num_heads, a0.qkv.out_features, a0.proj.in_features) == (2, 2 * 3 * 64, 128)
    assert (a1.num_heads, a1.head_dim, a1.attn_dim, a1.scale) == (1, 64, 64, 64**-0.5)
    reference = masked(model, heads={0: [1], 1: [0, 2]})
    with torch.no_grad():
        want, got = reference(x), pruned(x)
        wrong = masked(model, heads={0: [0], 1: [0, 2]})(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(wrong, want, atol=1e-4)  # the test can tell heads apart


@pytest.mark.parametrize("fused", [True, False])
def test_pruning_head_dims_keeps_the_logits_scale(vit, x, fused):
    model = copy.deepcopy(vit)
    for block in model.blocks:
        block.attn.fused_attn = fused
    assert not any(g.unit == "head_dims" for g in channel_groups(model, x))  # opt in
    groups = channel_groups(model, x, options=GroupOptions(head_dims=True))
    dims = [g for g in groups if g.unit == "head_dims"]
    assert [g.channels for g in dims] == [64, 64] and all(g.prunable for g in dims)
    cut = list(range(0, 64, 3))  # 22 of 64 dims in every head
    plan = plan_from_removed(groups, {"blocks.0.attn#head_dims": cut}, model=model)
    pruned = apply_plan(model, x, plan)
    attn = pruned.blocks[0].attn
    assert (attn.head_dim, attn.qkv.out_features, attn.proj.in_features) == (42, 378, 126)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(model, dims={0: cut})(x), atol=1e-5, rtol=1e-4)


def test_random_plan_round_trips_applies_and_exports(vit, x, tmp_path):
    groups = channel_groups(vit, x)
    plan = random_plan(vit, x, groups, target_ratio=0.4, seed=3)
    assert {"blocks.0.attn#heads", "blocks.1.attn#heads", "blocks.0.mlp.fc1"} <= set(plan.keep)
    loaded = PrunePlan.from_json(plan.to_json(tmp_path / "plan.json"))
    assert loaded == plan
    pruned = apply_plan(vit, x, loaded)
    for b, block in enumerate(pruned.blocks):
        heads = len(plan.keep[f"blocks.{b}.attn#heads"])
        assert block.attn.num_heads == heads and block.attn.qkv.out_features == 3 * 64 * heads
        assert block.mlp.fc1.out_features == len(plan.keep[f"blocks.{b}.mlp.fc1"])
    with torch.no_grad():
        want = pruned(x)
    ort = pytest.importorskip("onnxruntime")
    from ttmpd.profiler.backends.ort import export_onnx

    session = ort.InferenceSession(export_onnx(pruned, (x,)), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x0": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-3)


@pytest.mark.filterwarnings("ignore:.*have no latency unit")
def test_latency_search_prunes_heads(vit, tmp_path):
    from ttmpd.lut import LatencyPredictor, profile_model
    from ttmpd.profiler import GridConfig, get_backend
    from ttmpd.pruning import SearchConfig, prune

    x1 = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    calib = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    grid = GridConfig(channel_step=4, off_grid_per_unit=4)
    table = profile_model(vit, x1, get_backend("fake"), tmp_path / "lut.parquet",
                          progress=False, grid=grid).table  # fmt: skip
    predictor = LatencyPredictor().fit(table)
    result = prune(vit, x1, predictor, calib, SearchConfig(budget=0.9, progress=False))
    assert result.predicted_latency_ms <= result.target_latency_ms + 1e-9
    # head groups are candidates with a positive predicted saving (MLP widths, priced as
    # token units, may still be the better buy at this budget)
    heads = head_candidates(result)
    assert heads and all(r["predicted_latency_ms"] < result.base_latency_ms for r in heads)
    # the head pricing agrees with the predictor on the physically pruned model
    whole = predictor.predict_model(result.model, x1).total_ms
    assert whole == pytest.approx(result.predicted_latency_ms, rel=1e-6)


@pytest.fixture(scope="module")
def priced(vit, tmp_path_factory):
    """``fusion -> predictor`` fitted on a fake-backend table of ``vit`` with that fusion
    (fused sdpa, or matmul/softmax/matmul); each fitted once per module (a fit is seconds)."""
    from ttmpd.lut import LatencyPredictor, profile_model
    from ttmpd.profiler import GridConfig, get_backend
    from ttmpd.profiler.backends.fake import FakeBackend

    x1 = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    grid = GridConfig(channel_step=4, off_grid_per_unit=4)
    fitted: dict[str, object] = {}

    def predictor_for(fusion: str):
        if fusion not in fitted:
            with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*have no latency unit")
                patch.setattr(FakeBackend, "fusion", fusion)
                out = tmp_path_factory.mktemp(fusion) / "lut.parquet"
                table = profile_model(vit, x1, get_backend("fake"), out, progress=False,
                                      grid=grid).table  # fmt: skip
            assert table.meta.fusion == fusion
            fitted[fusion] = LatencyPredictor().fit(table)
        return fitted[fusion]

    return predictor_for


def _priced_problem(vit, priced, fusion, monkeypatch, options=None):
    """A search problem on ``vit`` priced by a fake-backend table with ``fusion`` (fused
    sdpa, or matmul/softmax/matmul), with its predictor and batch-1 input."""
    from ttmpd.profiler.backends.fake import FakeBackend
    from ttmpd.pruning import SearchConfig
    from ttmpd.pruning._problem import SearchProblem

    x1 = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    calib = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(FakeBackend, "fusion", fusion)
    predictor = priced(fusion)
    config = SearchConfig(budget=0.9, progress=False, groups=options or GroupOptions())
    return SearchProblem(vit, x1, predictor, calib, config), predictor, x1


def _assert_priced_as_pruned(vit, problem, predictor, x1, state: dict[str, int]) -> None:
    from ttmpd.pruning import apply_plan, plan_from_removed

    removed = {gid: list(range(n)) for gid, n in state.items() if n}
    pruned = apply_plan(vit, x1, plan_from_removed(problem.groups, removed))
    whole = predictor.predict_model(pruned, x1).total_ms
    assert problem.latency([state])[0] == pytest.approx(whole, rel=1e-6), state


@pytest.mark.parametrize("fusion", ["none", "none+attention-parts"])
def test_head_pricing_matches_the_predictor_on_the_pruned_model(vit, priced, fusion,
                                                                monkeypatch):  # fmt: skip
    problem, predictor, x1 = _priced_problem(vit, priced, fusion, monkeypatch)
    heads = [g for g in problem.prunable if g.id.endswith("#heads")]
    assert len(heads) == 2
    for group in heads:
        for k in (1, 2):  # the attention unit (3 heads) shrinks with its qkv and proj
            _assert_priced_as_pruned(vit, problem, predictor, x1, {group.id: k})


@pytest.mark.parametrize("fusion", ["none", "none+attention-parts"])
def test_head_dim_pricing_matches_the_predictor_on_the_pruned_model(vit, priced, fusion,
                                                                    monkeypatch):  # fmt: skip
    """Head dims shrink the attention core's per-head size too, alone and with heads."""
    options = GroupOptions(head_dims=True)
    problem, predictor, x1 = _priced_problem(vit, priced, fusion, monkeypatch, options)
    for k, j in ((0, 1), (0, 8), (1, 8), (2, 31)):
        state = {"blocks.0.attn#heads": k, "blocks.0.attn#head_dims": j}
        _assert_priced_as_pruned(vit, problem, predictor, x1, state)


def test_embedding_width_is_opt_in_and_slices_every_member(vit, x):
    closed = {g.id: g for g in channel_groups(vit, x)}["patch_embed.proj"]
    assert not closed.prunable and "GroupOptions(embedding=True)" in closed.reason
    groups = channel_groups(vit, x, options=GroupOptions(embedding=True))
    stream = {g.id: g for g in groups}["patch_embed.proj"]
    assert stream.prunable and stream.channels == 192
    assert {("blocks.1.norm2", "out"), ("blocks.1.attn.qkv", "in"), ("head", "in")} <= set(
        stream.members
    )
    removed = list(range(0, 192, 4))
    kept = [c for c in range(192) if c not in removed]
    pruned = apply_plan(vit, x, plan_from_removed(groups, {"patch_embed.proj": removed}))
    # every coupled tensor keeps exactly the surviving embedding channels, in order
    pairs = [
        (pruned.patch_embed.proj.weight, vit.patch_embed.proj.weight[kept]),
        (pruned.cls_token, vit.cls_token[..., kept]),
        (pruned.pos_embed, vit.pos_embed[..., kept]),
        (pruned.blocks[0].norm1.weight, vit.blocks[0].norm1.weight[kept]),
        (pruned.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight[:, kept]),
        (pruned.blocks[1].attn.proj.bias, vit.blocks[1].attn.proj.bias[kept]),
        (pruned.blocks[1].mlp.fc2.weight, vit.blocks[1].mlp.fc2.weight[kept]),
        (pruned.norm.bias, vit.norm.bias[kept]),
        (pruned.head.weight, vit.head.weight[:, kept]),
    ]
    for got, want in pairs:
        torch.testing.assert_close(got, want)
    with torch.no_grad():
        assert pruned(x).shape == (2, 10) and torch.isfinite(pruned(x)).all()


def test_heads_and_head_dims_together_remove_the_channels_pruning_removes(vit, tmp_path):
    """Removing k of H heads and j of D dims keeps c·(H − k)(D − j) qkv rows, not
    c·(HD − kD − jH): the priced shrink of qkv and proj matches the pruned model, and the
    deepest joint prune stays priceable (it came out NaN when the overlap was ignored)."""
    from ttmpd.lut import LatencyPredictor, profile_model
    from ttmpd.profiler import GridConfig, extract_units, get_backend
    from ttmpd.pruning import SearchConfig
    from ttmpd.pruning._problem import SearchProblem

    x1 = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    calib = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    table = profile_model(vit, x1, get_backend("fake"), tmp_path / "lut.parquet", progress=False,
                          grid=GridConfig(channel_step=8, off_grid_per_unit=0)).table  # fmt: skip
    predictor = LatencyPredictor().fit(table)
    config = SearchConfig(budget=0.9, progress=False, groups=GroupOptions(head_dims=True))
    problem = SearchProblem(vit, x1, predictor, calib, config)
    heads, dims = "blocks.0.attn#heads", "blocks.0.attn#head_dims"
    plan = plan_from_removed(problem.groups, {heads: [0, 1], dims: list(range(40))})
    pruned = apply_plan(vit, x1, plan)
    assert pruned.blocks[0].attn.qkv.out_features == 3 * 1 * 24
    units = extract_units(vit, x1, predictor.fusion_).units
    after = {u.name: u.config for u in extract_units(pruned, x1, predictor.fusion_).units}
    removed = problem.pricing.removed_channels([{heads: 2, dims: 40}])[0]
    for i, unit in enumerate(units):
        if unit.name in ("blocks.0.attn.qkv", "blocks.0.attn.proj"):
            c = unit.config
            kept = (c.in_channels - removed[i, 0], c.out_channels - removed[i, 1])
            assert kept == (after[unit.name].in_channels, after[unit.name].out_channels)
    deepest = {g.id: problem.max_k[g.id] for g in problem.prunable}
    assert np.isfinite(problem.latency([deepest])[0])
