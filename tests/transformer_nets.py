"""Tiny transformers for the tests: a ViT and a BERT-like encoder, plus one configuration of
every transformer unit kind."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ttmpd.profiler import UnitConfig

#: One configuration of every transformer unit kind (token, channels-last and attention).
TRANSFORMER_UNITS = [
    UnitConfig("linear", 2, 16, 24, 9, 1, 9, 1, bias=True, layout="nhwc"),
    UnitConfig("layernorm", 2, 16, 16, 9, 1, 9, 1, layout="nhwc"),
    UnitConfig("rmsnorm", 1, 16, 16, 9, 1, 9, 1, layout="nhwc"),
    UnitConfig("act", 1, 8, 8, 4, 4, 4, 4, act="gelu", layout="nhwc"),
    UnitConfig("add", 1, 16, 16, 9, 1, 9, 1, n_inputs=2, layout="nhwc"),
    UnitConfig("mul", 1, 16, 16, 9, 1, 9, 1, n_inputs=2, broadcast=True, layout="nhwc"),
    UnitConfig("mul", 1, 16, 16, 9, 1, 9, 1),
    UnitConfig("cat", 2, 16, 16, 9, 1, 9, 1, n_inputs=2, layout="nhwc"),
    UnitConfig("gap", 1, 16, 16, 9, 1, 1, 1, layout="nhwc"),
    UnitConfig("softmax", 1, 2 * 9, 2 * 9, 9, 1, 9, 1, heads=2),
    UnitConfig("matmul", 1, 2 * 8, 2 * 9, 9, 1, 9, 1, heads=2),
    UnitConfig("matmul", 1, 2 * 9, 2 * 8, 9, 1, 9, 1, heads=2),
    UnitConfig("sdpa", 2, 2 * 8, 2 * 8, 9, 9, 9, 1, heads=2),
    UnitConfig("embedding", 2, 50, 16, 9, 1, 9, 1, layout="nhwc"),
    UnitConfig("copy", 1, 12, 12, 4, 4, 4, 4, groups=2),
    UnitConfig("copy", 1, 12, 12, 9, 1, 9, 1, layout="nhwc"),
]


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection and fused attention (timm-style)."""

    def __init__(self, dim: int, heads: int, head_dim: int | None = None) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim or dim // heads
        self.qkv = nn.Linear(dim, 3 * heads * self.head_dim)
        self.proj = nn.Linear(heads * self.head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, head_dim: int | None = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    """Patch embedding, class token, positions, ``depth`` blocks, class-token head.

    ``head_dim`` (default ``dim // heads``) fixed, fewer ``heads`` is a head-pruned ViT."""

    def __init__(
        self, image: int = 16, patch: int = 4, dim: int = 32, heads: int = 2, mlp: int = 64,
        depth: int = 2, classes: int = 10, pool: str = "token", head_dim: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        tokens = (image // patch) ** 2 + 1
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp, head_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0] if self.pool == "token" else x.mean(dim=1))


class TinyBert(nn.Module):
    """Token embedding, positions, ``depth`` post-norm blocks, mean pooling."""

    def __init__(
        self, vocab: int = 100, tokens: int = 16, dim: int = 32, heads: int = 2,
        mlp: int = 64, depth: int = 2,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp) for _ in range(depth)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(ids) + self.pos)
        return self.blocks(x).mean(dim=1)
