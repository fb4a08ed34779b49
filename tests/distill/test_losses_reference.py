"""Every registered loss against an independent computation of its documented formula.

Three kinds of check, all in float64 with near-exact tolerances:

- a tiny example per loss (2x2 logits, 1-3 samples x 1-2 channels x 2 positions) whose value
  is worked out by hand in a comment;
- a reference implementation per loss, written here from the paper's formula with plain
  torch ops or loops (nothing from ttmpd's loss code), on random features of a pruned
  student (fewer channels) and of a student whose first map is larger than the teacher's;
  trainable parts (connectors, regressors, heads) are set to known values first;
- the properties a wrong implementation would break: zero for equal inputs, the invariances
  each paper states, KD's ``T^2`` factor, DKD's decomposition of KD, FT's detached factor,
  CRD's negatives and memory updates.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from ttmpd.distill import LOSSES, Features, LossContext, list_losses

#: float64 everywhere: the losses and the references should agree to rounding
TOL = {"rel": 1e-9, "abs": 1e-12}
B = 4
CLASSES = 5
#: (student shapes, teacher shapes) per sample: a pruned student (fewer channels, same maps)
#: and one whose first map is 4x4 where the teacher's is 2x2 (pooled by the losses)
GEOMETRIES = {
    "pruned": (((3, 4, 4), (5, 2, 2)), ((4, 4, 4), (6, 2, 2))),
    "resized": (((3, 4, 4), (5, 2, 2)), ((4, 2, 2), (6, 2, 2))),
}


def _loss(name: str, context: LossContext, **kwargs):
    return LOSSES.get(name)(context, **kwargs).double()


def _set(param: torch.Tensor, values) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(values, dtype=param.dtype).reshape(param.shape))


def _fix_parameters(loss, seed: int = 7) -> None:
    """Give every trainable part known (seeded, non-identity) values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in loss.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _features(shapes, seed: int, *, relu: bool = False, b: int = B) -> Features:
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(b, CLASSES, generator=g, dtype=torch.float64)
    maps = [torch.randn(b, *s, generator=g, dtype=torch.float64) for s in shapes]
    if relu:  # hooked teacher stages end in a ReLU: exact zeros and positives
        maps = [m.clamp_min(0) for m in maps]
    return Features(logits, tuple(maps), torch.arange(b))


def _f(*maps: torch.Tensor, logits=None) -> Features:
    """Features from hand-written maps (float64); logits default to zeros."""
    maps = tuple(torch.as_tensor(m, dtype=torch.float64) for m in maps)
    if logits is None:
        logits = torch.zeros(len(maps[0]), 2, dtype=torch.float64)
    logits = torch.as_tensor(logits, dtype=torch.float64)
    return Features(logits, maps, torch.arange(len(logits)))


def _ctx(student: Features, teacher: Features, num_samples: int = 0) -> LossContext:
    return LossContext(
        teacher.logits.shape[1],
        tuple(tuple(f.shape[1:]) for f in student.features),
        tuple(tuple(f.shape[1:]) for f in teacher.features),
        num_samples,
    )


# ---------------------------------------------------------------------------------------
# Hand-worked tiny examples
# ---------------------------------------------------------------------------------------


def test_ce_by_hand():
    # teacher [[2, 0], [0, 1]] -> pseudo labels [0, 1]
    # student [ln 3, 0]: softmax [3/4, 1/4] -> -ln(3/4) = ln(4/3); student [0, 0] -> ln 2
    # mean = (ln(4/3) + ln 2) / 2 = ln(8/3) / 2
    t = _f([[0.0], [0.0]], logits=[[2.0, 0.0], [0.0, 1.0]])
    s = _f([[0.0], [0.0]], logits=[[math.log(3), 0.0], [0.0, 0.0]])
    got = _loss("ce", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(math.log(8 / 3) / 2, **TOL)


def test_kd_by_hand():
    # T = 4. Sample 0: teacher z/T = [ln 3, 0] -> p_t = [3/4, 1/4]; student z = 0 -> [1/2, 1/2]
    #   KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 3/4 ln 3 - ln 2
    # Sample 1: student == teacher -> 0.  T^2 * batch mean = 16 * (3/4 ln 3 - ln 2) / 2
    t = _f([[0.0], [0.0]], logits=[[4 * math.log(3), 0.0], [1.0, 2.0]])
    s = _f([[0.0], [0.0]], logits=[[0.0, 0.0], [1.0, 2.0]])
    got = _loss("kd", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(6 * math.log(3) - 8 * math.log(2), **TOL)


def test_dkd_by_hand():
    # T = 4, alpha = 1, beta = 8. Teacher z/T = ln[2, 1, 1] -> p_t = [1/2, 1/4, 1/4], y = 0;
    # student z/T = ln[1, 1, 2] -> p_s = [1/4, 1/4, 1/2].
    # TCKD: KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3)
    # NCKD: non-target p_t [1/2, 1/2] vs p_s [1/3, 2/3]: 1/2 ln(3/2) + 1/2 ln(3/4) = 1/2 ln(9/8)
    # L = T^2 (1 * 1/2 ln(4/3) + 8 * 1/2 ln(9/8)) = 8 ln(4/3) + 64 ln(9/8)
    t = _f([[0.0]], logits=[[4 * math.log(2), 0.0, 0.0]])
    s = _f([[0.0]], logits=[[0.0, 0.0, 4 * math.log(2)]])
    got = _loss("dkd", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(8 * math.log(4 / 3) + 64 * math.log(9 / 8), **TOL)


def test_fitnet_by_hand():
    # 1 sample, 2 channels, 1x2 map; connector W = [[1, 1], [0, 2]]
    # student c0 = [1, 2], c1 = [0, 1] -> W f_s: c0 = [1, 3], c1 = [0, 2]
    # teacher c0 = [1, 1], c1 = [1, 2] -> diffs [0, 2, -1, 0] -> MSE = (0 + 4 + 1 + 0) / 4
    s = _f([[[[1.0, 2.0]], [[0.0, 1.0]]]])
    t = _f([[[[1.0, 1.0]], [[1.0, 2.0]]]])
    loss = _loss("fitnet", _ctx(s, t))
    _set(loss.connectors[0].proj.weight, [[1.0, 1.0], [0.0, 2.0]])
    assert loss(s, t).item() == pytest.approx(5 / 4, **TOL)


def test_at_by_hand():
    # sample 0: teacher c0 = [[1, 0], [0, 0]], c1 = 0 -> mean_c f^2 = [1/2, 0, 0, 0] -> Q_t = e_1
    #   student c0 = [[1, 1], [0, 0]], c1 = [[1, -1], [0, 0]] -> [1, 1, 0, 0] -> Q_s = (e_1+e_2)/√2
    #   sum_i (Q_s - Q_t)^2 = (1 - 1/√2)^2 + 1/2 = 2 - √2
    # sample 1: equal maps -> 0.  Mean over 2 samples x 4 positions: (2 - √2) / 8
    t0 = [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]
    s0 = [[[1.0, 1.0], [0.0, 0.0]], [[1.0, -1.0], [0.0, 0.0]]]
    same = [[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]
    s, t = _f([s0, same]), _f([t0, same])
    got = _loss("at", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx((2 - math.sqrt(2)) / 8, **TOL)


def test_ab_by_hand():
    # margin 1, identity connector; teacher [2, 0, -1, 3] -> active [1, 0, 0, 1]
    # student [0.5, -2, 0.5, 1.5]:
    #   active:   relu(1 - 0.5)^2 = 0.25     inactive: relu(1 - 2)^2 = 0
    #   inactive: relu(1 + 0.5)^2 = 2.25     active:   relu(1 - 1.5)^2 = 0
    # mean = 2.5 / 4
    s = _f([[[[0.5, -2.0], [0.5, 1.5]]]])
    t = _f([[[[2.0, 0.0], [-1.0, 3.0]]]])
    got = _loss("ab", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(0.625, **TOL)


def test_vid_by_hand():
    # 1 channel, regressor 1x1 convs with weight 1 and bias 0 -> mu(f_s) = relu(f_s);
    # alpha = softplus^{-1}(5) (the documented initial variance) -> sigma^2 = 5 + 1e-6.
    # f_s = [1, -1] -> mu = [1, 0]; f_t = [2, 0] -> (f_t - mu)^2 = [1, 0]
    # L = mean(1/2 log sigma^2 + d^2 / (2 sigma^2)) = 1/2 log sigma^2 + (1 / (2 sigma^2)) / 2
    s, t = _f([[[[1.0, -1.0]]]]), _f([[[[2.0, 0.0]]]])
    loss = _loss("vid", _ctx(s, t))
    for conv in (loss.regressors[0][0], loss.regressors[0][2]):
        _set(conv.weight, [1.0])
        _set(conv.bias, [0.0])
    _set(loss.alphas[0], [math.log(math.expm1(5.0))])
    var = 5.0 + 1e-6
    assert loss(s, t).item() == pytest.approx(0.5 * math.log(var) + 0.25 / var, **TOL)


def _delta(c_out: int, c_in: int, pairs) -> torch.Tensor:
    """3x3 kernels that copy input channel ``i`` to output channel ``o`` for (o, i) in pairs."""
    w = torch.zeros(c_out, c_in, 3, 3, dtype=torch.float64)
    for o, i in pairs:
        w[o, i, 1, 1] = 1.0
    return w


def test_ft_by_hand():
    # Teacher 2 channels -> factor k = 1; all convs copy channels (centre taps), biases 0:
    #   encoder: identity, ReLU, take channel 0 -> F_t = relu(f_t[0]) = [3, 4]
    #   decoder: factor -> channel 0, ReLU, identity -> D(F_t) = [[3, 4], [0, 0]]
    #   translator: student channel 0 -> F_s = [1, 0]
    # teacher c0 = [3, 4], c1 = [1, 1]: reconstruction MSE = (0 + 0 + 1 + 1) / 4 = 0.5
    # u(F_t) = [0.6, 0.8], u(F_s) = [1, 0]: mean |u_s - u_t| = (0.4 + 0.8) / 2 = 0.6
    # L = 0.6 + 0.5
    s = _f([[[[1.0, 0.0]]]])
    t = _f([[[[3.0, 4.0]], [[1.0, 1.0]]]])
    loss = _loss("ft", _ctx(s, t))
    kernels = {
        loss.encoder[0]: _delta(2, 2, [(0, 0), (1, 1)]),
        loss.encoder[2]: _delta(1, 2, [(0, 0)]),
        loss.decoder[0]: _delta(2, 1, [(0, 0)]),
        loss.decoder[2]: _delta(2, 2, [(0, 0), (1, 1)]),
        loss.translator[0]: _delta(1, 1, [(0, 0)]),
        loss.translator[2]: _delta(1, 1, [(0, 0)]),
    }
    for conv, w in kernels.items():
        _set(conv.weight, w)
        _set(conv.bias, torch.zeros(w.shape[0]))
    assert loss(s, t).item() == pytest.approx(1.1, **TOL)


def test_fsp_by_hand():
    # 1 sample, 1 channel per layer, 1x2 maps, identity connectors: G = f1 . f2 / (H W)
    # teacher f1 = [1, 2], f2 = [3, 4] -> G_t = (3 + 8) / 2 = 11/2
    # student f1 = [1, 0], f2 = [3, 4] -> G_s = 3 / 2
    # L = (G_s - G_t)^2 = 16
    s = _f([[[[1.0, 0.0]]]], [[[[3.0, 4.0]]]])
    t = _f([[[[1.0, 2.0]]]], [[[[3.0, 4.0]]]])
    got = _loss("fsp", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(16.0, **TOL)


def test_sp_by_hand():
    # 2 samples, Q = vec(f): student [[1, 0], [1, 1]] -> Q Q^T = [[1, 1], [1, 2]]
    #   rows normalised: [[1/√2, 1/√2], [1/√5, 2/√5]]
    # teacher [[1, 0], [0, 1]] -> Q Q^T = I (rows already unit)
    # ||G_s - G_t||_F^2 = (1 - 1/√2)^2 + 1/2 + 1/5 + (1 - 2/√5)^2 = 4 - √2 - 4/√5
    # / B^2 = 4  ->  1 - √2/4 - 1/√5
    s = _f([[[[1.0]], [[0.0]]], [[[1.0]], [[1.0]]]])
    t = _f([[[[1.0]], [[0.0]]], [[[0.0]], [[1.0]]]])
    got = _loss("sp", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(1 - math.sqrt(2) / 4 - 1 / math.sqrt(5), **TOL)


def test_rkd_by_hand():
    # embeddings on a line: student x = 0, 1, 2; teacher x = 0, 1, 3
    # distances (ordered pairs i != j, each twice): student 1, 2, 1 -> mu = 4/3 -> 3/4, 3/2, 3/4
    #                                               teacher 1, 3, 2 -> mu = 2   -> 1/2, 3/2, 1
    # Huber (|x| < 1: x^2 / 2) of the differences 1/4, 0, -1/4: 1/32, 0, 1/32, twice each
    # -> sum 1/8 over 3 x 3 entries (diagonal 0): 1/72
    # angles: same order on a line in both -> angle term 0.  L = 25 / 72
    s = _f([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    t = _f([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    got = _loss("rkd", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(25 / 72, **TOL)


def test_pkt_by_hand():
    # student e = [[1, 0], [0, 1]]: cos = I -> K = (cos + 1)/2 = [[1, 1/2], [1/2, 1]]
    #   rows normalised: [[2/3, 1/3], [1/3, 2/3]]
    # teacher e = [[1, 0], [1, 0]]: cos = 1 -> K = 1 -> p_t = 1/2 everywhere
    # mean over 4 entries of 1/2 ln((1/2) / p_s) = (1/4) (ln(3/4) + ln(3/2)) = ln(9/8) / 4
    # (eps = 1e-7 inside the log shifts this by ~1e-7: tolerance 1e-6)
    s = _f([[1.0, 0.0], [0.0, 1.0]])
    t = _f([[1.0, 0.0], [1.0, 0.0]])
    got = _loss("pkt", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(math.log(9 / 8) / 4, rel=1e-6)


def test_cc_by_hand():
    # gamma = 0.4, P = 2: C(x.y) = e^{-0.8} (1 + 0.8 (x.y) + 0.32 (x.y)^2)
    # student e orthogonal: off-diagonal x.y = 0 -> e^{-0.8}; teacher e equal: x.y = 1 ->
    # 2.12 e^{-0.8}; diagonals agree. Two off-diagonal entries differ by 1.12 e^{-0.8}:
    # L = 2 (1.12)^2 e^{-1.6} / B^2 = 0.6272 e^{-1.6}
    s = _f([[2.0, 0.0], [0.0, 3.0]])
    t = _f([[1.0, 1.0], [1.0, 1.0]])
    got = _loss("cc", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(0.6272 * math.exp(-1.6), **TOL)


def test_nst_by_hand():
    # 1 sample, 1x2 maps. teacher channels [2, 0] and [0, 5] -> normalised e_1, e_2
    # student one channel [1, 1] -> (e_1 + e_2)/√2
    # mean K_tt = mean [[1, 0], [0, 1]] = 1/2; mean K_ss = 1; mean K_st = mean [1/2, 1/2] = 1/2
    # MMD^2 = 1/2 + 1 - 2 (1/2) = 1/2
    s = _f([[[[1.0, 1.0]]]])
    t = _f([[[[2.0, 0.0]], [[0.0, 5.0]]]])
    got = _loss("nst", _ctx(s, t))(s, t)
    assert got.item() == pytest.approx(0.5, **TOL)


def test_crd_by_hand():
    # N = 2 samples -> K = 1 negative: the other sample. dim 2, identity heads, no bias,
    # tau = 1 / ln 3 so that exp(1 / tau) = 3.
    # student v_s = e_1, e_2 (normalised); memory_t = [e_1, e_2]:
    #   each sample: positive score 1/tau, negative 0 -> -ln(3 / (3 + 1)) = ln(4/3)
    # teacher v_t = e_1, e_2; memory_s = [e_2, e_1]:
    #   each sample: positive 0, negative 1/tau -> -ln(1 / (1 + 3)) = ln 4
    # L = mean(L_s + L_t) = ln(4/3) + ln 4 = ln(16/3)
    s = _f([[3.0, 0.0], [0.0, 0.5]])
    t = _f([[2.0, 0.0], [0.0, 7.0]])
    loss = _loss("crd", _ctx(s, t, num_samples=2), dim=2, temperature=1 / math.log(3))
    for head in (loss.embed_s, loss.embed_t):
        _set(head.weight, torch.eye(2))
        _set(head.bias, torch.zeros(2))
    loss.memory_t.copy_(torch.eye(2))
    loss.memory_s.copy_(torch.eye(2).flip(0))
    loss.eval()  # no memory update, so the value is repeatable
    assert loss(s, t).item() == pytest.approx(math.log(16 / 3), **TOL)
    loss.train()
    assert loss(s, t).item() == pytest.approx(math.log(16 / 3), **TOL)
    # momentum 0.5: M <- normalize(0.5 M + 0.5 v); memory_s[0] = normalize(e_2 + e_1)
    r = 1 / math.sqrt(2)
    expected_s = torch.full((2, 2), r, dtype=torch.float64)
    torch.testing.assert_close(loss.memory_s, expected_s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss.memory_t, torch.eye(2, dtype=torch.float64))


# ---------------------------------------------------------------------------------------
# Reference implementations on random features (written from the papers' formulas)
# ---------------------------------------------------------------------------------------


def _softmax(z: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [x / sum(e) for x in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def _argmax(z: list[float]) -> int:
    return max(range(len(z)), key=z.__getitem__)


def _pool(x: torch.Tensor, hw) -> torch.Tensor:
    """Average over equal blocks down to ``hw`` (adaptive pooling with exact factors)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, hw[0], h // hw[0], hw[1], w // hw[1]).mean((3, 5))


def _smaller(a: torch.Tensor, b: torch.Tensor):
    hw = min(a.shape[-2:], b.shape[-2:], key=lambda s: s[0] * s[1])
    return _pool(a, hw), _pool(b, hw)


def _conv1x1(x: torch.Tensor, w: torch.Tensor, bias=None) -> torch.Tensor:
    y = torch.einsum("oc,bchw->bohw", w.reshape(w.shape[0], w.shape[1]), x)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def _connect(loss, s: Features, t: Features) -> list[torch.Tensor]:
    """Student maps through the loss's (fixed) 1x1 connectors, pooled to the teacher's size."""
    return [
        _pool(_conv1x1(fs, c.proj.weight), ft.shape[-2:])
        for c, fs, ft in zip(loss.connectors, s.features, t.features, strict=True)
    ]


def _gap(f: torch.Tensor) -> torch.Tensor:
    return f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)


def _unit_rows(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``x / ||x||`` along ``dim``; an all-zero vector (a dead ReLU channel) stays zero."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(1e-12)


def ref_ce(loss, s, t):
    total = 0.0
    for zs, zt in zip(s.logits.tolist(), t.logits.tolist(), strict=True):
        total -= math.log(_softmax(zs, 1.0)[_argmax(zt)])
    return total / len(s.logits)


def ref_kd(loss, s, t, temperature=4.0):
    pairs = zip(s.logits.tolist(), t.logits.tolist(), strict=True)
    kls = [_kl(_softmax(zt, temperature), _softmax(zs, temperature)) for zs, zt in pairs]
    return temperature**2 * sum(kls) / len(kls)


def ref_dkd(loss, s, t, alpha=1.0, beta=8.0, temperature=4.0):
    total = 0.0
    for zs, zt in zip(s.logits.tolist(), t.logits.tolist(), strict=True):
        y = _argmax(zt)
        ps, pt = _softmax(zs, temperature), _softmax(zt, temperature)
        tckd = _kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        hat_t = [p / (1 - pt[y]) for c, p in enumerate(pt) if c != y]
        hat_s = [p / (1 - ps[y]) for c, p in enumerate(ps) if c != y]
        total += temperature**2 * (alpha * tckd + beta * _kl(hat_t, hat_s))
    return total / len(s.logits)


def ref_fitnet(loss, s, t):
    mse = [(r - ft).pow(2).mean() for r, ft in zip(_connect(loss, s, t), t.features, strict=True)]
    return float(sum(mse)) / len(mse)


def ref_at(loss, s, t, p=2.0):
    total = 0.0
    for fs, ft in zip(s.features, t.features, strict=True):
        fs, ft = _smaller(fs, ft)
        qs, qt = (_unit_rows(f.abs().pow(p).mean(1).flatten(1)) for f in (fs, ft))
        total += float((qs - qt).pow(2).mean())  # summed over layers (RepDistiller)
    return total


def ref_ab(loss, s, t, margin=1.0):
    values = []
    for r, ft in zip(_connect(loss, s, t), t.features, strict=True):
        per_neuron = torch.where(ft > 0, (margin - r).clamp_min(0), (margin + r).clamp_min(0))
        values.append(float(per_neuron.pow(2).mean()))
    return sum(values) / len(values)


def ref_vid(loss, s, t):
    values = []
    for reg, alpha, fs, ft in zip(
        loss.regressors, loss.alphas, s.features, t.features, strict=True
    ):
        hidden = _conv1x1(fs, reg[0].weight, reg[0].bias).clamp_min(0)
        mu = _pool(_conv1x1(hidden, reg[2].weight, reg[2].bias), ft.shape[-2:])
        var = (torch.log1p(torch.exp(alpha)) + 1e-6).view(1, -1, 1, 1)  # softplus
        values.append(float((0.5 * torch.log(var) + (ft - mu).pow(2) / (2 * var)).mean()))
    return sum(values) / len(values)


def _block(seq, x):
    """conv3x3 (pad 1) -> ReLU -> conv3x3 (pad 1) with the module's weights."""
    hidden = F.conv2d(x, seq[0].weight, seq[0].bias, padding=1).clamp_min(0)
    return F.conv2d(hidden, seq[2].weight, seq[2].bias, padding=1)


def ref_ft(loss, s, t):
    fs, ft = s.features[-1], t.features[-1]
    factor_t = _block(loss.encoder, ft)
    recon = (_block(loss.decoder, factor_t) - ft).pow(2).mean()
    factor_s, factor_t = _smaller(_block(loss.translator, fs), factor_t)
    u_s, u_t = _unit_rows(factor_s.flatten(1)), _unit_rows(factor_t.flatten(1))
    return float((u_s - u_t).abs().mean() + recon)


def _fsp_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = _smaller(a, b)
    h, w = a.shape[-2:]
    g = torch.zeros(a.shape[0], a.shape[1], b.shape[1], dtype=a.dtype)
    for i, j in itertools.product(range(a.shape[1]), range(b.shape[1])):
        g[:, i, j] = (a[:, i] * b[:, j]).sum((1, 2)) / (h * w)
    return g


def ref_fsp(loss, s, t):
    fs, ft = _connect(loss, s, t), t.features
    values = [
        float((_fsp_matrix(fs[i], fs[i + 1]) - _fsp_matrix(ft[i], ft[i + 1])).pow(2).mean())
        for i in range(len(ft) - 1)
    ]
    return sum(values) / len(values)


def ref_sp(loss, s, t):
    values = []
    for fs, ft in zip(s.features, t.features, strict=True):
        gs, gt = (_unit_rows(f.flatten(1) @ f.flatten(1).T) for f in (fs, ft))
        values.append(float((gs - gt).pow(2).sum()) / len(fs) ** 2)
    return sum(values) / len(values)


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def _rkd_potentials(e: torch.Tensor):
    e = e.tolist()
    n = len(e)

    def sub(a, b):
        return [x - y for x, y in zip(a, b, strict=True)]

    def norm(v):
        return math.sqrt(sum(x * x for x in v))

    dist = [[norm(sub(e[i], e[j])) for j in range(n)] for i in range(n)]
    mu = sum(dist[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    psi_d = [dist[i][j] / mu for i in range(n) for j in range(n)]
    psi_a = []
    for i, j, k in itertools.product(range(n), repeat=3):  # angle at e_j
        u, v = sub(e[i], e[j]), sub(e[k], e[j])
        nu, nv = norm(u), norm(v)
        # degenerate triplets (i == j or k == j) have a zero edge: cosine taken as 0
        psi_a.append(sum(a * b for a, b in zip(u, v, strict=True)) / (nu * nv) if nu * nv else 0.0)
    return psi_d, psi_a


def ref_rkd(loss, s, t):
    ds, as_ = _rkd_potentials(_gap(s.features[-1]))
    dt, at = _rkd_potentials(_gap(t.features[-1]))
    dist = sum(_huber(a - b) for a, b in zip(ds, dt, strict=True)) / len(ds)
    angle = sum(_huber(a - b) for a, b in zip(as_, at, strict=True)) / len(as_)
    return 25 * dist + 50 * angle


def ref_pkt(loss, s, t, eps=1e-7):
    def conditional(f):
        e = _unit_rows(_gap(f))
        k = (e @ e.T + 1) / 2
        return k / k.sum(1, keepdim=True)

    ps, pt = conditional(s.features[-1]), conditional(t.features[-1])
    return float((pt * torch.log((pt + eps) / (ps + eps))).mean())


def ref_cc(loss, s, t, gamma=0.4, order=2):
    def correlation(f):
        dot = _unit_rows(_gap(f)) @ _unit_rows(_gap(f)).T
        terms = [(2 * gamma) ** p / math.factorial(p) * dot**p for p in range(order + 1)]
        return math.exp(-2 * gamma) * sum(terms)

    cs, ct = correlation(s.features[-1]), correlation(t.features[-1])
    return float((cs - ct).pow(2).sum()) / len(cs) ** 2


def ref_nst(loss, s, t):
    values = []
    for fs, ft in zip(s.features, t.features, strict=True):
        fs, ft = _smaller(fs, ft)
        x, y = _unit_rows(fs.flatten(2), dim=2), _unit_rows(ft.flatten(2), dim=2)
        mmd = []
        for b in range(len(x)):
            k_ss = (x[b] @ x[b].T).pow(2).mean()
            k_tt = (y[b] @ y[b].T).pow(2).mean()
            k_st = (x[b] @ y[b].T).pow(2).mean()
            mmd.append(float(k_ss + k_tt - 2 * k_st))
        values.append(sum(mmd) / len(mmd))
    return sum(values) / len(values)


def ref_crd(loss, s, t, tau=0.07):
    # only for N = 2 samples: the one negative of sample i is the other sample
    v_s = _unit_rows(_gap(s.features[-1]) @ loss.embed_s.weight.T + loss.embed_s.bias)
    v_t = _unit_rows(_gap(t.features[-1]) @ loss.embed_t.weight.T + loss.embed_t.bias)
    total = 0.0
    for i in s.index.tolist():
        for v, memory in ((v_s[i], loss.memory_t), (v_t[i], loss.memory_s)):
            pos, neg = float(v @ memory[i]) / tau, float(v @ memory[1 - i]) / tau
            total -= math.log(math.exp(pos) / (math.exp(pos) + math.exp(neg)))
    return total / len(s.index)


REFERENCES = {
    "ce": ref_ce,
    "kd": ref_kd,
    "dkd": ref_dkd,
    "fitnet": ref_fitnet,
    "at": ref_at,
    "ab": ref_ab,
    "vid": ref_vid,
    "ft": ref_ft,
    "fsp": ref_fsp,
    "sp": ref_sp,
    "rkd": ref_rkd,
    "pkt": ref_pkt,
    "cc": ref_cc,
    "nst": ref_nst,
    "crd": ref_crd,
}


def test_every_registered_loss_has_a_reference():
    assert sorted(REFERENCES) == list_losses()


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("name", list_losses())
def test_loss_matches_reference(name, geometry):
    s_shapes, t_shapes = GEOMETRIES[geometry]
    s, t = _features(s_shapes, seed=1), _features(t_shapes, seed=2, relu=True)
    b = 2 if name == "crd" else B  # CRD's reference covers N = 2 (one, known negative)
    s = Features(s.logits[:b], tuple(f[:b] for f in s.features), torch.arange(b))
    t = Features(t.logits[:b], tuple(f[:b] for f in t.features), torch.arange(b))
    loss = _loss(name, _ctx(s, t, num_samples=b)).eval()
    _fix_parameters(loss)
    with torch.no_grad():
        expected = REFERENCES[name](loss, s, t)
        got = loss(s, t).item()
    assert got == pytest.approx(expected, **TOL)


def test_defaults_used_by_the_references_are_the_documented_ones():
    ctx = LossContext(CLASSES, ((3, 4, 4), (5, 2, 2)), ((4, 4, 4), (6, 2, 2)), num_samples=2)
    assert LOSSES.get("kd")(ctx).temperature == 4.0
    dkd = LOSSES.get("dkd")(ctx)
    assert (dkd.alpha, dkd.beta, dkd.temperature) == (1.0, 8.0, 4.0)
    assert LOSSES.get("at")(ctx).p == 2.0
    assert LOSSES.get("ab")(ctx).margin == 1.0
    rkd = LOSSES.get("rkd")(ctx)
    assert (rkd.w_dist, rkd.w_angle) == (25.0, 50.0)
    cc = LOSSES.get("cc")(ctx)
    assert (cc.gamma, cc.order) == (0.4, 2)
    vid = LOSSES.get("vid")(ctx)
    variances = [F.softplus(a) + 1e-6 for a in vid.alphas]
    assert all(torch.allclose(v, torch.full_like(v, 5.0 + 1e-6)) for v in variances)
    crd = LOSSES.get("crd")(ctx)
    assert (crd.embed_s.out_features, crd.temperature, crd.momentum) == (128, 0.07, 0.5)
    assert crd.negatives == 1  # min(4096, N - 1)
    assert LOSSES.get("crd")(LossContext(4, ((3,),), ((3,),), 10_000)).negatives == 4096
    assert LOSSES.get("ft")(ctx).encoder[2].out_channels == 3  # factor rate 0.5 of 6


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------


def test_kd_ignores_a_per_sample_shift_of_the_logits():
    t = _features(GEOMETRIES["pruned"][1], seed=2)
    shift = torch.arange(B, dtype=torch.float64).unsqueeze(1) * 3.7
    s = Features(t.logits + shift, t.features)
    assert float(_loss("kd", _ctx(s, t))(s, t)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_kd_gradient_is_t_times_the_probability_gap(temperature):
    # d/dz_s [T^2 KL(p_t || p_s)] / B = T (p_s - p_t) / B: the T^2 factor makes it O(1/T)
    # instead of O(1/T^3)
    s, t = _features((), seed=1), _features((), seed=2)
    zs = s.logits.clone().requires_grad_(True)
    loss = _loss("kd", LossContext(CLASSES), temperature=temperature)
    loss(Features(zs), t).backward()
    expected = temperature * (
        torch.softmax(s.logits / temperature, 1) - torch.softmax(t.logits / temperature, 1)
    )
    torch.testing.assert_close(zs.grad, expected / B, rtol=1e-9, atol=1e-12)


def test_kd_at_high_temperature_matches_logit_matching():
    # Hinton et al. 2015, sec. 2.1: as T -> inf, T^2 KL -> 1/(2C) sum_c (d_c - mean d)^2 with
    # d = z_t - z_s (matching zero-mean logits); without T^2 the value would vanish as 1/T^2
    s, t = _features((), seed=1), _features((), seed=2)
    d = t.logits - s.logits
    expected = float(((d - d.mean(1, keepdim=True)) ** 2).sum(1).mean()) / (2 * CLASSES)
    got = float(_loss("kd", LossContext(CLASSES), temperature=1e4)(s, t))
    assert got == pytest.approx(expected, rel=1e-3)


def test_dkd_decomposes_kd():
    # Zhao et al. 2022, eq. (5): KD = TCKD + (1 - p_t^y) NCKD, per sample
    s, t = _features((), seed=1, b=1), _features((), seed=2, b=1)
    ctx = LossContext(CLASSES)
    temperature = 4.0
    p_ty = float(torch.softmax(t.logits[0] / temperature, 0).max())
    dkd = _loss("dkd", ctx, alpha=1.0, beta=1 - p_ty)
    assert dkd(s, t).item() == pytest.approx(float(_loss("kd", ctx)(s, t)), **TOL)


def test_at_ignores_scale_and_channel_order_of_the_student():
    # attention maps are channel means, L2-normalised per sample
    s_shapes, t_shapes = GEOMETRIES["pruned"]
    s, t = _features(s_shapes, seed=1), _features(t_shapes, seed=2)
    loss = _loss("at", _ctx(s, t))
    moved = Features(s.logits, tuple(3.0 * f.flip(1) for f in s.features))
    assert loss(moved, t).item() == pytest.approx(loss(s, t).item(), **TOL)


def _rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


def test_rkd_is_zero_up_to_rotation_translation_and_scale():
    # Park et al. 2019: distances normalised by their batch mean, angles -> both invariant
    t = _features([(6,)], seed=2)
    e = t.features[0]
    moved = 2.5 * e @ _rotation(6, 3) + torch.linspace(-1, 1, 6, dtype=torch.float64)
    s = Features(t.logits, (moved,))
    assert float(_loss("rkd", _ctx(s, t))(s, t)) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize(("name", "factor"), [("rkd", 0.01), ("sp", 7.0)])
def test_relation_losses_ignore_a_global_scale_of_the_student(name, factor):
    s_shapes, t_shapes = GEOMETRIES["pruned"]
    s, t = _features(s_shapes, seed=1), _features(t_shapes, seed=2)
    loss = _loss(name, _ctx(s, t))
    scaled = Features(s.logits, tuple(factor * f for f in s.features))
    assert loss(scaled, t).item() == pytest.approx(loss(s, t).item(), **TOL)


def test_pkt_and_cc_ignore_the_length_of_each_embedding():
    # both kernels see only cosine similarities of L2-normalised embeddings
    s, t = _features([(5,)], seed=1), _features([(7,)], seed=2)
    lengths = torch.tensor([[0.1], [1.0], [3.0], [40.0]], dtype=torch.float64)
    stretched = Features(s.logits, (s.features[0] * lengths,))
    for name in ("pkt", "cc"):
        loss = _loss(name, _ctx(s, t))
        assert loss(stretched, t).item() == pytest.approx(loss(s, t).item(), **TOL), name


def test_cc_taylor_series_converges_to_the_gaussian_kernel():
    # Peng et al. 2019: exp(-gamma ||x - y||^2) on unit vectors is the P -> inf limit
    s, t = _features([(5,)], seed=1), _features([(7,)], seed=2)
    gamma = 0.4
    cs = torch.exp(-gamma * torch.cdist(_unit_rows(s.features[0]), _unit_rows(s.features[0])) ** 2)
    ct = torch.exp(-gamma * torch.cdist(_unit_rows(t.features[0]), _unit_rows(t.features[0])) ** 2)
    expected = float((cs - ct).pow(2).sum()) / B**2
    got = float(_loss("cc", _ctx(s, t), order=30)(s, t))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_nst_compares_channel_sets():
    # Huang & Wang 2017: channels are samples of a distribution, each normalised: the loss
    # ignores their order and their individual scales
    s_shapes, t_shapes = GEOMETRIES["pruned"]
    s, t = _features(s_shapes, seed=1), _features(t_shapes, seed=2)
    loss = _loss("nst", _ctx(s, t))
    moved = []
    for f in s.features:
        scales = torch.arange(1, f.shape[1] + 1, dtype=torch.float64).view(1, -1, 1, 1)
        moved.append(f.flip(1) * scales)
    assert float(loss(Features(s.logits, tuple(moved)), t)) == pytest.approx(
        loss(s, t).item(), **TOL
    )


def test_ft_encoder_learns_only_from_the_reconstruction():
    # the teacher factor is detached in the transfer term: the encoder's gradient is that of
    # MSE(D(P(f_t)), f_t) alone; the translator gets the transfer term's gradient
    s_shapes, t_shapes = GEOMETRIES["pruned"]
    s, t = _features(s_shapes, seed=1), _features(t_shapes, seed=2, relu=True)
    loss = _loss("ft", _ctx(s, t))
    _fix_parameters(loss)
    encoder = list(loss.encoder.parameters())
    got = torch.autograd.grad(loss(s, t), encoder)
    ft = t.features[-1]
    recon = (_block(loss.decoder, _block(loss.encoder, ft)) - ft).pow(2).mean()
    expected = torch.autograd.grad(recon, encoder)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12)
    loss(s, t).backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in loss.translator.parameters())


def _crd_with_banks(num_samples: int, memory_s, memory_t, **kwargs):
    ctx = LossContext(2, ((3,),), ((3,),), num_samples)
    loss = _loss("crd", ctx, dim=3, **kwargs)
    for head in (loss.embed_s, loss.embed_t):
        _set(head.weight, torch.eye(3))
        _set(head.bias, torch.zeros(3))
    loss.memory_s.copy_(torch.as_tensor(memory_s, dtype=torch.float64))
    loss.memory_t.copy_(torch.as_tensor(memory_t, dtype=torch.float64))
    return loss


@pytest.mark.parametrize("seed", range(5))
def test_crd_negatives_are_the_other_samples(seed):
    # N = 4 samples -> K = 3 negatives drawn among the 3 others. The banks are built so that
    # every non-positive row scores the same against each batch vector: the value does not
    # depend on which negatives are drawn, but it does if the positive is drawn as a negative.
    # batch = samples 0 and 2 with v = e_1, e_2. Row r of a bank scores (row . e_1) for
    # sample 0 and (row . e_2) for sample 2:
    #   memory_t: positives p = 0.5, 0.3, negatives q = 0.4, 0.2
    #   memory_s: positives p = 0.1, -0.2, negatives q = 0.3, 0.0
    # per sample -log(e^{p/tau} / (e^{p/tau} + 3 e^{q/tau})) = log(1 + 3 e^{(q - p)/tau})
    memory_t = [[0.5, 0.2, 0], [0.4, 0.2, 0], [0.4, 0.3, 0], [0.4, 0.2, 0]]
    memory_s = [[0.1, 0.0, 0], [0.3, 0.0, 0], [0.3, -0.2, 0], [0.3, 0.0, 0]]
    loss = _crd_with_banks(4, memory_s, memory_t).eval()
    v = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)
    s = Features(torch.zeros(2, 2, dtype=torch.float64), (v,), torch.tensor([0, 2]))
    t = Features(s.logits, (v.clone(),), s.index)
    tau = 0.07
    pairs = [(0.5, 0.4), (0.3, 0.2), (0.1, 0.3), (-0.2, 0.0)]
    expected = sum(math.log(1 + 3 * math.exp((q - p) / tau)) for p, q in pairs) / 2
    torch.manual_seed(seed)
    assert loss(s, t).item() == pytest.approx(expected, **TOL)


def test_crd_updates_only_the_batch_rows_and_only_in_training():
    g = torch.Generator().manual_seed(0)
    banks = [_unit_rows(torch.randn(5, 3, generator=g, dtype=torch.float64)) for _ in range(2)]
    loss = _crd_with_banks(5, banks[0].clone(), banks[1].clone())
    s, t = _features([(3,)], seed=1, b=2), _features([(3,)], seed=2, b=2)
    s = Features(s.logits, s.features, torch.tensor([4, 1]))
    t = Features(t.logits, t.features, s.index)
    loss.eval()(s, t)
    assert torch.equal(loss.memory_s, banks[0]) and torch.equal(loss.memory_t, banks[1])
    loss.train()(s, t)
    for memory, old, f in ((loss.memory_s, banks[0], s), (loss.memory_t, banks[1], t)):
        expected = old.clone()
        expected[[4, 1]] = _unit_rows(0.5 * old[[4, 1]] + 0.5 * _unit_rows(f.features[0]))
        torch.testing.assert_close(memory, expected, rtol=1e-12, atol=1e-12)


def test_at_with_another_exponent_matches_reference():
    s_shapes, t_shapes = GEOMETRIES["resized"]
    s, t = _features(s_shapes, seed=1), _features(t_shapes, seed=2)
    loss = _loss("at", _ctx(s, t), p=4.0)
    with torch.no_grad():
        assert loss(s, t).item() == pytest.approx(ref_at(loss, s, t, p=4.0), **TOL)
        assert loss(s, t).item() != pytest.approx(ref_at(loss, s, t), rel=1e-3)


def test_fsp_over_three_layers_matches_reference():
    s = _features(((3, 4, 4), (5, 2, 2), (2, 2, 2)), seed=1)
    t = _features(((4, 4, 4), (6, 2, 2), (3, 2, 2)), seed=2, relu=True)
    loss = _loss("fsp", _ctx(s, t))
    _fix_parameters(loss)
    with torch.no_grad():
        assert loss(s, t).item() == pytest.approx(ref_fsp(loss, s, t), **TOL)


def test_vid_on_vectors_matches_its_formula():
    # hooked vectors (B, D): the regressor is linear - ReLU - linear
    s, t = _features(((3,), (5,)), seed=1), _features(((4,), (6,)), seed=2)
    loss = _loss("vid", _ctx(s, t))
    _fix_parameters(loss)
    values = []
    with torch.no_grad():
        for reg, alpha, fs, ft in zip(
            loss.regressors, loss.alphas, s.features, t.features, strict=True
        ):
            hidden = (fs @ reg[0].weight.T + reg[0].bias).clamp_min(0)
            mu = hidden @ reg[2].weight.T + reg[2].bias
            var = torch.log1p(torch.exp(alpha)) + 1e-6
            values.append(float((0.5 * torch.log(var) + (ft - mu).pow(2) / (2 * var)).mean()))
        assert loss(s, t).item() == pytest.approx(sum(values) / len(values), **TOL)
