"""A small Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021)
for MNIST-sized images.

Layout (pre-norm blocks, as in the paper and timm's ``VisionTransformer``)::

    patch conv (kernel = stride = patch) -> (B, tokens, dim)
    -> prepend class token -> + learned positions
    -> depth x [x + attn(norm1(x)); x + fc2(gelu(fc1(norm2(x))))]
    -> norm -> head(class token)

The attention module follows timm's layout so ttmpd's pruning finds its heads: one ``qkv``
linear (rows ordered q, k, v, then head, then dim), ``num_heads``, ``head_dim``, ``scale``,
and a ``proj`` linear; the core is ``F.scaled_dot_product_attention`` without an explicit
scale (it divides by ``sqrt(head_dim)`` of the tensors it gets, which head-dim pruning
relies on; see :mod:`ttmpd.pruning._attention`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ._zoo import MODELS


def sincos_positions(grid: int, dim: int) -> torch.Tensor:
    """(grid², dim) fixed 2-D positions (MAE, He et al. 2022): the first half of the
    channels encodes the row, the second the column, each as ``sin(p·w_i)`` then
    ``cos(p·w_i)`` for ``w_i = 10000^(-i / (dim/4))``, ``i < dim/4``, rows in raster order."""
    if dim % 4:
        raise InputError(f"dim {dim} must be a multiple of 4 for 2-D sine-cosine positions")
    omega = 10000.0 ** -(torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = []
    for coord in (rows, cols):
        angles = coord.reshape(-1, 1).double() * omega
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, dim): ``num_heads`` heads of ``head_dim``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise InputError(f"dim {dim} must be a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class Block(nn.Module):
    """One pre-norm encoder block: attention and a GELU MLP, each with a residual add."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    """A ViT with a class-token head; see the module docstring for the layout.

    ``img_size`` must be a multiple of ``patch_size``; inputs must have that size (the
    positions are learned per token).
    """

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        in_channels: int,
        num_classes: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise InputError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
        self.grid = img_size // patch_size
        tokens = self.grid**2 + 1
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        mlp_dim = round(dim * mlp_ratio)
        self.blocks = nn.Sequential(*(Block(dim, num_heads, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Positions start as a 2-D sine-cosine table (:func:`sincos_positions`, learned
        afterwards); the rest follows timm's ViT: truncated N(0, 0.02) for linears and the
        class token, zero biases. With N(0, 0.02) positions a ViT trained on a few thousand
        digits starts as a bag of patches and learns where they are only slowly."""
        with torch.no_grad():
            self.pos_embed[0, 1:] = sincos_positions(self.grid, self.pos_embed.shape[-1])
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@MODELS.register
def vit_mnist(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    img_size: int = 28,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 4,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
) -> VisionTransformer:
    """A tiny ViT for 28x28 digits: 4x4 patches (49 tokens + class token), 4 blocks, 0.14M params.

    Width 64, 4 heads of 16, MLP 128, class-token head. For other sizes set ``img_size``
    (a multiple of ``patch_size``).
    """
    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        in_channels=in_channels,
        num_classes=num_classes,
        dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
    )
