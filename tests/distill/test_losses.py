"""The loss catalogue's contract: the registry and its documented default weights, spec
parsing, weighted combinations, zero/minimal values where documented, gradients to the student
and connectors but never the teacher. Each loss's value is checked against an independent
computation in ``test_losses_reference.py``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ttmpd._registry import UnknownNameError
from ttmpd.distill import (
    LOSSES,
    CombinedLoss,
    FeatureHooks,
    Features,
    LossContext,
    LossTerm,
    list_losses,
    parse_loss_spec,
)
from ttmpd.distill._losses import attention_map, spec_needs_features
from ttmpd.errors import InputError

ALL = list_losses()
#: losses that vanish when the student's features/logits equal the teacher's
ZERO_WHEN_EQUAL = {"kd", "dkd", "fitnet", "at", "sp", "rkd", "pkt", "cc", "nst", "fsp"}
#: losses that never vanish (a likelihood, a margin, a reconstruction, a contrast):
#: training must lower them instead
DECREASE = set(ALL) - ZERO_WHEN_EQUAL - {"ab"}

B = 6


def _features(channels=(8, 16), seed=0, classes=4, requires_grad=False) -> Features:
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(B, channels[0], 8, 8, generator=g).relu()
    f2 = torch.randn(B, channels[1], 4, 4, generator=g).relu()
    logits = torch.randn(B, classes, generator=g) * 3
    tensors = [logits, f1, f2]
    if requires_grad:
        tensors = [t.clone().requires_grad_(True) for t in tensors]
    return Features(tensors[0], tuple(tensors[1:]), torch.arange(B))


def _context(s=(8, 16), t=(8, 16), classes=4, n=32) -> LossContext:
    return LossContext(classes, ((s[0], 8, 8), (s[1], 4, 4)), ((t[0], 8, 8), (t[1], 4, 4)), n)


def test_every_documented_loss_is_registered():
    expected = {"ce", "kd", "dkd", "fitnet", "at", "ab", "vid", "ft", "fsp"}
    expected |= {"sp", "rkd", "pkt", "cc", "nst", "crd"}
    assert set(ALL) == expected


#: the default weights each loss's docstring states (RepDistiller's settings where it has one)
DOCUMENTED_WEIGHTS = {
    "ce": 1.0,
    "kd": 0.9,
    "dkd": 1.0,
    "fitnet": 100.0,
    "at": 1000.0,
    "ab": 1.0,
    "vid": 1.0,
    "ft": 1.0,
    "fsp": 1.0,
    "sp": 3000.0,
    "rkd": 1.0,
    "pkt": 30000.0,
    "cc": 1.0,
    "nst": 50.0,
    "crd": 0.8,
}


def test_a_bare_name_in_a_spec_takes_the_documented_default_weight():
    terms = parse_loss_spec(",".join(ALL))
    assert {t.name: t.weight for t in terms} == DOCUMENTED_WEIGHTS


@pytest.mark.parametrize("name", sorted(ZERO_WHEN_EQUAL))
def test_zero_for_identical_inputs(name):
    torch.manual_seed(0)
    loss = LOSSES.get(name)(_context()).double()
    f = _features()
    f = Features(f.logits.double(), tuple(m.double() for m in f.features), f.index)
    assert loss(f, f).item() == pytest.approx(0.0, abs=1e-12)


def test_ab_is_zero_when_margins_hold():
    loss = LOSSES.get("ab")(_context())
    t = _features()
    s = Features(t.logits, tuple(torch.where(f > 0, 2.0, -2.0) for f in t.features))
    assert loss(s, t).item() == 0.0
    assert loss(t, t).item() > 0  # inactive teacher neurons at 0 sit inside the margin


def test_ce_is_minimal_at_the_pseudo_labels():
    loss = LOSSES.get("ce")(_context())
    t = _features()
    sharp = Features(F.one_hot(t.logits.argmax(1), 4).float() * 50, t.features)
    assert float(loss(sharp, t)) < 1e-6 < float(loss(_features(seed=5), t))


@pytest.mark.parametrize("name", sorted(DECREASE))
def test_non_vanishing_losses_decrease_with_training(name):
    torch.manual_seed(0)
    loss = LOSSES.get(name)(_context(s=(4, 8)))
    student, teacher = _features((4, 8), seed=1, requires_grad=True), _features(seed=2)
    params = [student.logits, *student.features, *loss.parameters()]
    opt = torch.optim.Adam(params, lr=0.05)
    first = loss(student, teacher).item()
    for _ in range(30):
        opt.zero_grad()
        loss(student, teacher).backward()
        opt.step()
    assert loss(student, teacher).item() < first


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_student_and_connectors_never_teacher(name, make_net):
    torch.manual_seed(0)
    teacher, student = make_net((8, 16), seed=1), make_net((4, 8), seed=2).train()
    for p in teacher.parameters():
        p.requires_grad_(True)  # even a careless teacher must not receive gradients
    x = torch.rand(B, 1, 12, 12)
    index = torch.arange(B)
    layers = ["layer1", "layer2"]
    with FeatureHooks(teacher, layers) as th, FeatureHooks(student, layers) as sh:
        t_out, s_out = th.run(teacher, x, index), sh.run(student, x, index)
    ctx = LossContext(
        4,
        tuple(tuple(f.shape[1:]) for f in s_out.features),
        tuple(tuple(f.shape[1:]) for f in t_out.features),
        num_samples=B,
    )
    loss = LOSSES.get(name)(ctx)
    value = loss(s_out, t_out)
    value.backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    own = [
        p
        for n, p in loss.named_parameters()
        if not n.startswith("encoder.") and not n.startswith("decoder.")
    ]
    if name == "crd":
        own = list(loss.embed_s.parameters())
    for p in own:
        assert p.grad is not None, f"{name}: {p.shape} got no gradient"


def test_connectors_are_identity_initialised():
    from ttmpd.distill import Connector

    c = Connector((8, 5, 5), (8, 5, 5))
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(c(x), x)
    wider = Connector((4, 6, 6), (8, 3, 3))
    assert wider(torch.randn(2, 4, 6, 6)).shape == (2, 8, 3, 3)


def test_spec_parser_weights_defaults_and_errors():
    terms = parse_loss_spec("kd:0.9, at:1000,ce")
    assert [(t.name, t.weight) for t in terms] == [("kd", 0.9), ("at", 1000.0), ("ce", 1.0)]
    with pytest.raises(UnknownNameError, match="choose one of: ab, at"):
        parse_loss_spec("kd,nope:1")
    with pytest.raises(InputError, match="not a number"):
        parse_loss_spec("kd:abc")
    with pytest.raises(InputError, match="twice"):
        parse_loss_spec("kd,kd:2")
    with pytest.raises(InputError, match="name\\[:weight\\]"):
        parse_loss_spec("kd,,ce")
    with pytest.raises(InputError, match=">= 0"):
        parse_loss_spec("kd:-1")


def test_combined_loss_is_the_weighted_sum():
    ctx = _context(s=(4, 8))
    s, t = _features((4, 8), seed=1), _features(seed=2)
    combined = CombinedLoss("kd:0.5,at:10", ctx)
    total, parts = combined(s, t)
    assert float(total) == pytest.approx(0.5 * parts["kd"] + 10 * parts["at"], rel=1e-5)
    assert parts["kd"] == pytest.approx(
        float(
            F.kl_div(
                F.log_softmax(s.logits / 4, 1), F.softmax(t.logits / 4, 1), reduction="batchmean"
            )
        )
        * 16,
        rel=1e-5,
    )


def test_feature_losses_need_layers():
    with pytest.raises(InputError, match="feature layer"):
        LOSSES.get("at")(LossContext(4))
    with pytest.raises(InputError, match="at least 2"):
        LOSSES.get("fsp")(LossContext(4, ((8, 4, 4),), ((8, 4, 4),)))


def test_loss_context_normalises_shapes_and_checks_its_counts():
    as_lists = LossContext(4, [[8, 4, 4], [16, 2, 2]], [[8, 4, 4], [16, 2, 2]])
    assert as_lists == LossContext(4, ((8, 4, 4), (16, 2, 2)), ((8, 4, 4), (16, 2, 2)))
    assert hash(as_lists) == hash(LossContext(4, ((8, 4, 4), (16, 2, 2)), ((8, 4, 4), (16, 2, 2))))
    with pytest.raises(InputError, match="num_classes must be positive, got 0"):
        LossContext(0)
    with pytest.raises(InputError, match=r"1 student feature layer\(s\) but 2 teacher layer\(s\)"):
        LossContext(4, ((8, 4, 4),), ((8, 4, 4), (16, 2, 2)))


def test_a_single_class_is_a_valid_context():
    # one class: every softmax is 1, so the pseudo-label cross-entropy is exactly 0
    ce = LOSSES.get("ce")(LossContext(1))
    logits = torch.randn(B, 1)
    assert float(ce(Features(logits), Features(logits + 1.0))) == 0.0


def test_zero_weight_is_allowed_and_drops_the_term():
    s, t = _features(seed=1), _features(seed=2)
    total, parts = CombinedLoss("kd:0,ce:1", _context())(s, t)
    assert parts["kd"] > 0
    assert float(total) == pytest.approx(parts["ce"], rel=1e-6)


def test_spec_as_a_list_of_terms():
    terms = [LossTerm("kd", 0.5), LossTerm("ce", 2.0)]
    s, t = _features(seed=1), _features(seed=2)
    total, parts = CombinedLoss(terms, _context())(s, t)
    assert float(total) == pytest.approx(0.5 * parts["kd"] + 2.0 * parts["ce"], rel=1e-6)
    hint = r"^give a loss spec like 'kd:0\.9,ce:0\.1' or a list of LossTerm$"
    for bad in ([], ["kd"], [LossTerm("kd", 1.0), "ce"]):
        with pytest.raises(InputError, match=hint):
            parse_loss_spec(bad)
    with pytest.raises(UnknownNameError, match="choose one of"):
        parse_loss_spec([LossTerm("nope", 1.0)])


def test_spec_errors_show_an_example():
    with pytest.raises(InputError, match=r"items separated by commas, e\.g\. kd:0\.9,ce:0\.1$"):
        parse_loss_spec(" ")
    with pytest.raises(
        InputError, match=r"of 'kd' in 'kd:x' is not a number; write e\.g\. kd:0\.9"
    ):
        parse_loss_spec("kd:x")


@pytest.mark.parametrize(
    ("spec", "needs"),
    [("kd,ce", False), ("kd:0.5,at", True), ("sp", True), ([LossTerm("fitnet", 1.0)], True)],
)
def test_spec_needs_features_iff_a_term_uses_hooked_layers(spec, needs):
    assert spec_needs_features(spec) is needs


def test_map_losses_name_the_vector_layer():
    maps = ((8, 4, 4), (16, 2, 2), (16, 2, 2))
    ctx = LossContext(4, maps, ((8, 4, 4), (16, 2, 2), (6,)))  # teacher layer 2 is a vector
    expected = (
        r"feature layer 2 has per-sample shape \(6,\) \(a vector\); hook conv stages or "
        r"transformer blocks, or use a loss for vectors \(e\.g\. rkd, pkt, cc, sp\)"
    )
    with pytest.raises(InputError, match=expected):
        LOSSES.get("at")(ctx)
    with pytest.raises(InputError, match=r"feature layer 0 has per-sample shape \(6,\)"):
        LOSSES.get("at")(LossContext(4, ((8, 4, 4),), ((6,),)))


#: losses that pair every student layer with a teacher layer
PER_LAYER = ["ab", "at", "fitnet", "fsp", "nst", "sp", "vid"]


@pytest.mark.parametrize("name", PER_LAYER)
def test_per_layer_losses_refuse_features_missing_a_layer(name):
    loss = LOSSES.get(name)(_context())
    s, t = _features(seed=1), _features(seed=2)
    short = Features(s.logits, s.features[:1], s.index)
    with pytest.raises(ValueError, match="zip"):
        loss(short, t)


def test_crd_reads_the_index_from_either_side_and_explains_its_needs():
    ctx = LossContext(4, ((8, 4, 4),), ((8, 4, 4),), num_samples=B)
    s, t = _features((8, 16), seed=1), _features((8, 16), seed=2)
    s = Features(s.logits, s.features[:1], torch.arange(B).flip(0))
    t = Features(t.logits, t.features[:1], None)

    def value(student, teacher):
        torch.manual_seed(0)  # same negatives each call
        with torch.no_grad():
            return LOSSES.get("crd")(ctx).eval()(student, teacher).item()

    both = value(s, Features(t.logits, t.features, s.index))
    assert value(s, t) == both
    assert value(Features(s.logits, s.features, None), Features(t.logits, t.features, s.index)) == (
        both
    )
    with pytest.raises(
        InputError, match=r"^loss 'crd' needs Features\.index \(sample indices of the batch\)$"
    ):
        value(Features(s.logits, s.features, None), t)
    with pytest.raises(
        InputError,
        match=r"needs the fine-tuning subset size \(at least 2\) for its memory banks; build it "
        r"through the trainer or pass LossContext\(num_samples=\.\.\.\)",
    ):
        LOSSES.get("crd")(LossContext(4, ((8, 4, 4),), ((8, 4, 4),), num_samples=1))


def test_crd_memory_banks_start_as_fixed_unit_rows():
    ctx = LossContext(4, ((8, 4, 4),), ((8, 4, 4),), num_samples=6)
    first, second = LOSSES.get("crd")(ctx), LOSSES.get("crd")(ctx)
    for name in ("memory_s", "memory_t"):
        bank = getattr(first, name)
        assert torch.allclose(bank.norm(dim=1), torch.ones(6))
        assert torch.equal(bank, getattr(second, name))  # the same start on every build
    assert not torch.equal(first.memory_s, first.memory_t)


def test_ft_needs_both_last_layers_to_be_maps():
    hint = r"needs a 4-D last feature layer \(student \(8, 4, 4\), teacher \(6,\)\); hook a conv"
    with pytest.raises(InputError, match=hint + " stage last"):
        LOSSES.get("ft")(LossContext(4, ((8, 4, 4),), ((6,),)))
    with pytest.raises(InputError, match="4-D last feature layer"):
        LOSSES.get("ft")(LossContext(4, ((6,),), ((8, 4, 4),)))


def test_attention_map_by_default_is_the_unit_mean_square_map():
    f = torch.randn(3, 5, 4, 4)
    q = f.pow(2).mean(1).flatten(1)
    torch.testing.assert_close(attention_map(f), q / q.norm(dim=1, keepdim=True))
