"""Units of PyTorch's fused transformer fast paths, which run as one ATen op.

In eval mode without autograd, ``nn.MultiheadAttention`` (batch-first self-attention) runs
``_native_multi_head_attention`` and ``nn.TransformerEncoderLayer`` runs
``_transformer_encoder_layer_fwd``: whole layers in one op. They are priced as the units
they compute, chained as the layer chains them:

* multi-head attention: the qkv projection (a token ``linear``, E -> 3E), attention
  (``sdpa``, or matmul/softmax/matmul where the backend splits it), the output projection;
* an encoder layer: that attention block, the residual ``add``, layer norms before
  (``norm_first``) or after each block, the MLP's two ``linear`` units and its activation.

Exported to ONNX, the same modules trace their slow path: the same units. Self-attention
only: cross-attention and masks are left uncovered.
"""

from __future__ import annotations

import torch

from ._units import UnitConfig

#: ``(config, inputs)``: inputs index earlier steps of the same op; ``-1`` is the op's input.
Step = tuple[UnitConfig, tuple[int, ...]]


def attention_units(
    batch: int, heads: int, rows: int, keys: int, d: int, dv: int, dtype: str, parts: bool
) -> list[UnitConfig]:
    """Attention of ``heads`` heads, ``rows`` queries over ``keys`` keys: one ``sdpa`` unit,
    or (``parts``) scores ``q·kᵀ`` (scale folded in), softmax over the keys, ``p·v``."""
    if not parts:
        sdpa = UnitConfig(
            op="sdpa", batch=batch, heads=heads, in_channels=heads * d,
            out_channels=heads * dv, in_h=rows, in_w=keys, out_h=rows, out_w=1, dtype=dtype,
        )  # fmt: skip
        return [sdpa]
    common = {"batch": batch, "heads": heads, "in_h": rows, "out_h": rows, "dtype": dtype}
    scores = heads * keys
    return [
        UnitConfig(op="matmul", in_channels=heads * d, out_channels=scores, **common),
        UnitConfig(op="softmax", in_channels=scores, out_channels=scores, **common),
        UnitConfig(op="matmul", in_channels=scores, out_channels=heads * dv, **common),
    ]


def _token(op: str, x: torch.Tensor, c_in: int, c_out: int | None = None, **extra) -> UnitConfig:
    n, tokens = x.shape[0], x.shape[1]
    return UnitConfig(
        op=op, batch=n, in_channels=c_in, out_channels=c_out or c_in, in_h=tokens,
        out_h=tokens, dtype=str(x.dtype).removeprefix("torch."), layout="nhwc", **extra,
    )  # fmt: skip


def _attention_block(x, embed: int, heads: int, parts: bool, first: int) -> list[Step]:
    """qkv projection, attention, output projection of ``x`` (B, N, E), the first step
    reading step ``first``."""
    n, tokens = x.shape[0], x.shape[1]
    dtype = str(x.dtype).removeprefix("torch.")
    d = embed // heads
    steps: list[Step] = [(_token("linear", x, embed, 3 * embed, bias=True), (first,))]
    for config in attention_units(n, heads, tokens, tokens, d, d, dtype, parts):
        steps.append((config, (len(steps) - 1,)))
    steps.append((_token("linear", x, embed, embed, bias=True), (len(steps) - 1,)))
    return steps


def _offset(steps: list[Step], by: int) -> list[Step]:
    return [(c, tuple(i + by if i >= 0 else i for i in ins)) for c, ins in steps]


def native_mha_steps(args: tuple, parts: bool) -> list[Step] | None:
    """Units of ``_native_multi_head_attention(q, k, v, embed_dim, num_head, ...)``."""
    a = list(args) + [None] * 13
    q, k, v, embed, heads, mask = a[0], a[1], a[2], a[3], a[4], a[9]
    self_attention = q is k is v or (q.data_ptr() == k.data_ptr() == v.data_ptr())
    if q.dim() != 3 or not self_attention or mask is not None or embed % heads:
        return None
    return _attention_block(q, embed, heads, parts, -1)


def encoder_layer_steps(args: tuple, parts: bool) -> list[Step] | None:
    """Units of ``_transformer_encoder_layer_fwd(src, embed_dim, num_heads, qkv_weight,
    qkv_bias, proj_weight, proj_bias, use_gelu, norm_first, eps, norm_weight_1, norm_bias_1,
    norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2, mask,
    mask_type)``."""
    a = list(args) + [None] * 20
    x, embed, heads, use_gelu, norm_first, ffn_1, mask = (
        a[0], a[1], a[2], a[7], a[8], a[14], a[18]
    )  # fmt: skip
    if x.dim() != 3 or mask is not None or embed % heads:
        return None
    hidden = ffn_1.shape[0]
    steps: list[Step] = []

    def add(config: UnitConfig, *inputs: int) -> int:
        steps.append((config, inputs))
        return len(steps) - 1

    def norm(source: int) -> int:
        return add(_token("layernorm", x, embed), source)

    residual = -1
    source = norm(residual) if norm_first else residual
    block = _offset(_attention_block(x, embed, heads, parts, 0), len(steps))
    block[0] = (block[0][0], (source,))
    steps.extend(block)
    out = add(_token("add", x, embed, n_inputs=2), len(steps) - 1, residual)
    residual = out if norm_first else norm(out)
    source = norm(residual) if norm_first else residual
    fc1 = add(_token("linear", x, embed, hidden, bias=True), source)
    act = add(_token("act", x, hidden, act="gelu" if use_gelu else "relu"), fc1)
    fc2 = add(_token("linear", x, hidden, embed, bias=True), act)
    out = add(_token("add", x, embed, n_inputs=2), fc2, residual)
    if not norm_first:
        norm(out)
    return steps


COMPOSITES = {
    "_native_multi_head_attention": native_mha_steps,
    "_transformer_encoder_layer_fwd": encoder_layer_steps,
}
