"""Turn a :class:`UnitConfig` back into a runnable module and inputs.

Every backend measures a unit by running what this module builds: eager PyTorch runs the
module, ONNX Runtime runs its ONNX export. Weights are random (latency does not depend on
values for dense float kernels); batch norm is in inference mode.
"""

from __future__ import annotations

import torch
from torch import nn

from ._units import UnitConfig

_ACT_MODULES = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardtanh": nn.Hardtanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "mish": nn.Mish,
}


def activation(name: str) -> nn.Module:
    return _ACT_MODULES[name]()


class _Binary(nn.Module):
    def __init__(self, op: str, n_inputs: int) -> None:
        super().__init__()
        self.op = op
        self.n_inputs = n_inputs

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        if len(xs) == 1:  # a product with a scalar
            return out * 0.125
        for x in xs[1:]:
            out = out + x if self.op == "add" else out * x
        return out


class _ConvResidual(nn.Module):
    """``act(bn(conv(x)) + residual)``: a conv unit with a fused residual add."""

    def __init__(self, conv: nn.Module, epilogue: list[nn.Module], act: nn.Module | None) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv, *epilogue)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x) + residual)


class _Cat(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class _MatMul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class _Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return nn.functional.scaled_dot_product_attention(q, k, v)


class _RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm``, exported to ONNX as its formula (opset 17 has no RMS norm op, and a
    model's RMS norm exports the same way)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight


class _Copy(nn.Module):
    """A permuted copy: groups and channels swapped (channel shuffle) for rank-5 inputs,
    else the last two dims."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.transpose(1, 2) if x.dim() == 5 else x.transpose(-1, -2)).contiguous()


class _TokenMean(nn.Module):
    """Mean over the positions of a channels-last tensor (token or spatial pooling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(1, x.dim() - 1)))


def _module(unit: UnitConfig) -> nn.Module:
    op = unit.op
    if op == "conv":
        layers: list[nn.Module] = [
            nn.Conv2d(
                unit.in_channels,
                unit.out_channels,
                (unit.kernel_h, unit.kernel_w),
                stride=(unit.stride_h, unit.stride_w),
                padding=(unit.pad_h, unit.pad_w),
                dilation=(unit.dilation_h, unit.dilation_w),
                groups=unit.groups,
                bias=unit.bias,
            )
        ]
        if unit.bn:
            layers.append(nn.BatchNorm2d(unit.out_channels))
        if unit.n_inputs > 1:
            return _ConvResidual(layers[0], layers[1:], activation(unit.act) if unit.act else None)
        if unit.act:
            layers.append(activation(unit.act))
        return layers[0] if len(layers) == 1 else nn.Sequential(*layers)
    if op == "linear":
        return nn.Linear(unit.in_channels, unit.out_channels, bias=unit.bias)
    if op == "layernorm":
        return nn.LayerNorm(unit.in_channels)
    if op == "rmsnorm":
        return _RMSNorm(unit.in_channels)
    if op == "embedding":
        return nn.Embedding(unit.in_channels, unit.out_channels)
    if op == "matmul":
        return _MatMul()
    if op == "copy":
        return _Copy()
    if op == "sdpa":
        return _Attention()
    if op == "gap" and unit.layout == "nhwc":
        return _TokenMean()
    if op == "bn":
        return nn.BatchNorm2d(unit.in_channels)
    if op == "act":
        return activation(unit.act)
    if op == "maxpool":
        return nn.MaxPool2d(
            (unit.kernel_h, unit.kernel_w),
            stride=(unit.stride_h, unit.stride_w),
            padding=(unit.pad_h, unit.pad_w),
            dilation=(unit.dilation_h, unit.dilation_w),
            ceil_mode=unit.ceil_mode,
        )
    if op == "avgpool":
        return nn.AvgPool2d(
            (unit.kernel_h, unit.kernel_w),
            stride=(unit.stride_h, unit.stride_w),
            padding=(unit.pad_h, unit.pad_w),
            ceil_mode=unit.ceil_mode,
        )
    if op == "gap":
        return nn.AdaptiveAvgPool2d((unit.out_h, unit.out_w))
    if op in ("add", "mul"):
        return _Binary(op, unit.n_inputs)
    if op == "cat":
        return _Cat()
    if op == "softmax":
        return nn.Softmax(dim=-1)
    raise AssertionError(f"unhandled op {op}")  # UnitConfig validated the op


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _inputs(unit: UnitConfig, dtype: torch.dtype, generator: torch.Generator) -> tuple:
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(dtype)

    n, c, h, w = unit.batch, unit.in_channels, unit.in_h, unit.in_w
    if unit.op in ("matmul", "sdpa") or (unit.op == "softmax" and unit.uses_heads):
        return _attention_inputs(unit, rand)
    if unit.op == "embedding":
        return (torch.randint(0, c, (n, h * w), generator=generator),)
    if unit.op == "softmax" and h * w > 1:
        return (rand(n, h * w, c),)
    if unit.op == "copy" and unit.groups > 1:
        return (rand(n, unit.groups, c // unit.groups, h, w),)
    if unit.layout == "nhwc":
        return _channels_last_inputs(unit, rand)
    if unit.op in ("linear", "softmax", "layernorm", "rmsnorm"):
        return (rand(n, c),)
    if unit.op in ("add", "mul"):
        other = (n, c, 1, 1) if unit.broadcast else (n, c, h, w)
        return (rand(n, c, h, w), *(rand(*other) for _ in range(unit.n_inputs - 1)))
    if unit.op == "cat":
        return tuple(rand(n, part, h, w) for part in _split(c, unit.n_inputs))
    if unit.op == "conv" and unit.n_inputs > 1:
        return rand(n, c, h, w), rand(n, unit.out_channels, unit.out_h, unit.out_w)
    return (rand(n, c, h, w),)


def _channels_last_inputs(unit: UnitConfig, rand) -> tuple:
    """Inputs of an ``nhwc`` unit: (N, tokens, C) when ``in_w == 1``, else (N, H, W, C)."""
    n, c, h, w = unit.batch, unit.in_channels, unit.in_h, unit.in_w
    positions = (h,) if w == 1 else (h, w)
    if unit.op == "cat":  # token concatenation, equal channels
        return tuple(rand(n, part, c) for part in _split(h * w, unit.n_inputs))
    if unit.op in ("add", "mul") and unit.n_inputs > 1:
        other = (n, *(1 for _ in positions), c) if unit.broadcast else (n, *positions, c)
        return (rand(n, *positions, c), *(rand(*other) for _ in range(unit.n_inputs - 1)))
    return (rand(n, *positions, c),)


def _attention_inputs(unit: UnitConfig, rand) -> tuple:
    """(batch, heads, rows, per-head) operands of matmul, sdpa and score softmax units."""
    n, heads, rows = unit.batch, unit.heads, unit.in_h
    per_in, per_out = unit.in_channels // heads, unit.out_channels // heads
    if unit.op == "matmul":
        return rand(n, heads, rows, per_in), rand(n, heads, per_in, per_out)
    if unit.op == "sdpa":
        keys = unit.in_w
        return (
            rand(n, heads, rows, per_in),
            rand(n, heads, keys, per_in),
            rand(n, heads, keys, per_out),
        )
    return (rand(n, heads, rows, per_in),)  # softmax over the scores' last dim


def build_unit(unit: UnitConfig, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build ``(module, inputs)`` for ``unit``: the module is in eval mode, on CPU.

    ``module(*inputs)`` runs the unit once; its output has shape
    ``(batch, out_channels, out_h, out_w)`` (or ``(batch, out_channels)`` for linear/softmax)
    for ``nchw`` units; ``nhwc`` units take and give channels-last tensors, attention units
    (batch, heads, tokens, per-head) ones (:mod:`ttmpd.profiler._units`).
    """
    dtype = getattr(torch, unit.dtype)
    generator = torch.Generator().manual_seed(seed)
    module = _module(unit).to(dtype).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, as after training
            m.running_var.uniform_(0.5, 1.5, generator=generator)
    return module, _inputs(unit, dtype, generator)
