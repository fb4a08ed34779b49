"""Distillation on transformer token features ``(B, N, C)`` and on vector features.

Token outputs are hooked as maps ``(B, C, N, 1)``: the hidden width is the channel axis a
pruned student shrinks, the tokens are the positions. Checked against computations written
here on the raw ``(B, N, C)`` tensors.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ttmpd.distill import LOSSES, Features, LossContext
from ttmpd.distill._features import FeatureHooks
from ttmpd.errors import InputError

B, N = 3, 5


class TokenNet(nn.Module):
    """Patch embedding to N tokens of width ``hidden``, two token blocks, a mean-pool head."""

    def __init__(self, hidden: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(6, hidden)
        self.block1 = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU())
        self.block2 = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU())
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, 6)
        return self.head(self.block2(self.block1(self.embed(x))).mean(1))


def _run(model: nn.Module, x: torch.Tensor) -> tuple[Features, dict[str, torch.Tensor]]:
    raw: dict[str, torch.Tensor] = {}
    handles = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: raw.__setitem__(name, out)
        )
        for name in ("block1", "block2")
    ]
    with FeatureHooks(model, ["block1", "block2"]) as hooks:
        features = hooks.run(model, x)
    for h in handles:
        h.remove()
    return features, raw


def test_token_outputs_are_hooked_as_maps_with_hidden_width_as_channels():
    torch.manual_seed(0)
    model, x = TokenNet(hidden=8), torch.randn(B, N, 6)
    features, raw = _run(model, x)
    for f, r in zip(features.features, (raw["block1"], raw["block2"]), strict=True):
        assert f.shape == (B, 8, N, 1)
        # position n, channel c of the map is token n, hidden unit c
        assert torch.equal(f[:, :, :, 0], r.transpose(1, 2))


def test_at_on_tokens_is_the_token_attention_of_the_paper():
    """AT on tokens: ``Q = normalize_n(mean_c |x_{n,c}|^2)``, L = sum_l mean (Q_s - Q_t)^2,
    with a pruned student (hidden 6 vs 8), computed on the raw (B, N, C) tensors."""
    torch.manual_seed(1)
    x = torch.randn(B, N, 6)
    student, teacher = TokenNet(hidden=6), TokenNet(hidden=8)
    fs, rs = _run(student, x)
    ft, rt = _run(teacher, x)
    context = LossContext(4, tuple(f.shape[1:] for f in fs.features),
                          tuple(f.shape[1:] for f in ft.features))  # fmt: skip
    loss = LOSSES.get("at")(context)(fs, ft)

    def q(t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N)
        a = t.pow(2).mean(2)
        return a / a.norm(dim=1, keepdim=True)

    expected = sum(((q(rs[k]) - q(rt[k])) ** 2).mean() for k in ("block1", "block2"))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() > 1e-6  # different nets: a loss that ignored the tokens would be 0


def test_fitnet_connects_a_pruned_hidden_width_and_vanishes_on_the_teachers_own_tokens():
    torch.manual_seed(2)
    x = torch.randn(B, N, 6)
    teacher = TokenNet(hidden=8)
    ft, rt = _run(teacher, x)
    shapes = tuple(f.shape[1:] for f in ft.features)
    same = LOSSES.get("fitnet")(LossContext(4, shapes, shapes))
    assert same(ft, ft).item() == pytest.approx(0.0, abs=1e-12)  # identity connectors
    pruned = tuple((6, *s[1:]) for s in shapes)
    loss = LOSSES.get("fitnet")(LossContext(4, pruned, shapes))
    fs = Features(ft.logits, tuple(f[:, :6] for f in ft.features))
    w = [c.proj.weight[:, :, 0, 0] for c in loss.connectors]
    # by hand: the connector is a per-token linear map of the hidden width
    expected = (
        sum(F.mse_loss(rt[k][..., :6] @ w[i].T, rt[k]) for i, k in enumerate(("block1", "block2")))
        / 2
    )
    assert loss(fs, ft).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["at", "nst", "fsp"])
def test_spatial_losses_refuse_vector_features_with_one_clear_line(name):
    shapes = ((16,), (32,))
    with pytest.raises(InputError, match=rf"loss '{name}' compares positions.*\(16,\)"):
        LOSSES.get(name)(LossContext(10, shapes, shapes))


def test_a_feature_of_another_rank_is_refused():
    model = nn.Sequential(nn.Identity(), nn.Flatten())
    with (
        FeatureHooks(model, ["0"]) as hooks,
        pytest.raises(InputError, match=r"tokens \(B, N, C\)"),
    ):
        hooks.run(model, torch.randn(1, 2, 3, 4, 5))
