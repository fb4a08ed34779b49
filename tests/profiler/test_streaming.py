"""Weight streaming: the probe's fit, the rule's record, the fake device's emulation."""

import numpy as np
import pytest

from ttmpd.errors import InputError
from ttmpd.profiler import DeviceRules, get_backend
from ttmpd.profiler._streaming import (
    CHAIN_LAYERS,
    WeightStreamingRule,
    fit_streaming,
    missed_share,
    streaming_chain,
)
from ttmpd.profiler.backends.fake import FAKE_STREAM_MS_PER_BYTE

LAYER_BYTES = 400 * 400 * 4


def chain_samples(capacity: float, rates: dict[str, float], h=0.01, o=0.003, full=None):
    """Per-layer latencies of chains under the streaming model, exactly (the hyperbolic
    share without ``full``, else a ramp from ``capacity`` to ``full``)."""
    out = []
    for kernel_class, s in rates.items():
        for k in CHAIN_LAYERS:
            f = k * LAYER_BYTES
            share = float(missed_share(np.array(f), capacity, full))
            out.append((kernel_class, f, h + o / k + s * LAYER_BYTES * share))
    return out


@pytest.mark.parametrize("capacity_mib", [1.5, 6.0, 12.0])
def test_the_fit_recovers_capacity_and_each_class_rate(capacity_mib):
    rates = {"blocked": 2e-8, "other": 9e-8}
    rule = fit_streaming(chain_samples(capacity_mib * 2**20, rates))
    assert rule.shape == "hyperbolic"
    assert rule.capacity_bytes == pytest.approx(capacity_mib * 2**20, rel=0.05)
    assert rule.rate("blocked") == pytest.approx(2e-8, rel=0.1)
    assert rule.rate("other") == pytest.approx(9e-8, rel=0.1)
    assert rule.streams and rule.probed_max_bytes == 64 * LAYER_BYTES


@pytest.mark.parametrize(("start_mib", "end_mib"), [(1.5, 1.5), (1.4, 2.8), (5.0, 12.0)])
def test_the_fit_tells_a_ramp_or_step_from_the_hyperbolic_share(start_mib, end_mib):
    """A cache that loses all of a sweep once it overflows is a step (or a short ramp), and
    the fit says so rather than spreading the cost as (1 - C/F)."""
    rates = {"blocked": 2e-8, "other": 9e-8}
    start, end = start_mib * 2**20, end_mib * 2**20
    rule = fit_streaming(chain_samples(start, rates, full=end))
    assert rule.shape == "ramp"
    assert rule.rate("other") == pytest.approx(9e-8, rel=0.1)
    probed = np.array([k * LAYER_BYTES for k in CHAIN_LAYERS])
    # the fitted share matches the true one at every probed footprint
    truth = missed_share(probed, start, end)
    assert rule.missed_share(probed) == pytest.approx(truth, abs=0.1)
    hyperbolic = fit_streaming(chain_samples(start, rates, full=end), shapes=("hyperbolic",))
    assert hyperbolic.shape == "hyperbolic"
    assert np.abs(hyperbolic.missed_share(probed) - truth).max() > 0.2


def test_the_missed_share_of_each_shape():
    f = np.array([1.0, 2.0, 3.0, 4.0, 8.0])
    assert missed_share(f, 2.0, None) == pytest.approx([0, 0, 1 / 3, 0.5, 0.75])
    assert missed_share(f, 2.0, 4.0) == pytest.approx([0, 0, 0.5, 1, 1])
    assert missed_share(f, 2.0, 2.0) == pytest.approx([0, 0, 1, 1, 1])  # a step
    with pytest.raises(InputError, match="ends at or after"):
        WeightStreamingRule(4e6, (("other", 1e-8),), full_bytes=3e6)
    with pytest.raises(InputError, match="streaming shapes"):
        fit_streaming(chain_samples(2**21, {"other": 9e-8}), shapes=("cubic",))


def test_caches_that_hold_every_chain_record_no_streaming():
    rule = fit_streaming(chain_samples(2**40, {"other": 9e-8}))
    assert not rule.streams
    assert "none up to 39 MiB" in rule.describe()


def test_the_fit_refuses_too_few_chain_lengths():
    with pytest.raises(InputError, match="4 or more"):
        fit_streaming([("other", LAYER_BYTES * k, 0.01) for k in (1, 2, 4)])


def test_extra_ms_is_rate_times_weights_beyond_the_capacity():
    rule = WeightStreamingRule(4e6, (("blocked", 1e-8), ("other", 5e-8)))
    w = np.array([1e6, 2e6, 1e6])
    extra = rule.extra_ms(w, np.full(3, 8e6), np.array([True, False, False]))
    assert extra == pytest.approx([1e-8 * 1e6 * 0.5, 5e-8 * 2e6 * 0.5, 5e-8 * 1e6 * 0.5])
    assert not rule.extra_ms(w, np.full(3, 3e6), np.ones(3, bool)).any()  # fits the caches
    assert rule.rate("depthwise") == 5e-8  # an unprobed class pays the other rate


def test_a_unit_that_streams_alone_pays_only_the_rest_in_a_model():
    # ramp from 2 MB to 4 MB: alone, a 3 MB unit already misses half, a 5 MB one all of it
    rule = WeightStreamingRule(2e6, (("other", 1e-8),), full_bytes=4e6)
    w = np.array([1e6, 3e6, 5e6])
    extra = rule.extra_ms(w, np.full(3, 20e6), np.zeros(3, bool))
    assert extra == pytest.approx([1e-8 * 1e6, 1e-8 * 3e6 * 0.5, 0.0])
    # hyperbolic share: an 8 MB unit misses 1 - 4/8 alone and 1 - 4/16 in a 16 MB model
    hyperbolic = WeightStreamingRule(4e6, (("other", 1e-8),))
    extra = hyperbolic.extra_ms(np.array([8e6]), np.array([16e6]), np.zeros(1, bool))
    assert extra == pytest.approx([1e-8 * 8e6 * 0.25])


def test_a_negative_rate_is_refused():
    with pytest.raises(InputError, match="non-negative"):
        WeightStreamingRule(1e6, (("other", -1e-9),))


def test_device_rules_keep_the_streaming_rule_and_read_tables_without_one():
    rule = WeightStreamingRule(4e6, (("other", 5e-8),), 4e7, (("other", 1e6, 0.01),))
    rules = DeviceRules(call_overhead_ms=0.002, streaming=rule)
    back = DeviceRules.from_dict(rules.to_dict())
    assert back == rules
    assert "beyond 3.8 MiB" in back.describe()
    ramp = DeviceRules(streaming=WeightStreamingRule(4e6, (("other", 5e-8),), full_bytes=8e6))
    assert DeviceRules.from_dict(ramp.to_dict()) == ramp
    assert "all of them from 7.6 MiB" in ramp.describe()
    old = rules.to_dict()
    del old["streaming"]  # a table written before the probe
    assert DeviceRules.from_dict(old).streaming is None


def test_streaming_chain_has_one_weight_per_layer():
    chain = streaming_chain(8, 3)
    convs = [m for m in chain.modules() if m.__class__.__name__ == "Conv2d"]
    assert len(convs) == 3 and len({id(c.weight) for c in convs}) == 3


def test_the_fake_device_probe_measures_its_emulated_cache(monkeypatch):
    """A device with other caches gets other figures: read from the device, not typed in."""
    monkeypatch.setenv("TTMPD_FAKE_BLOCK", "16")
    for kib in (2048, 8192):
        monkeypatch.setenv("TTMPD_FAKE_CACHE_KIB", str(kib))
        rule = get_backend("fake").probe_rules().streaming
        assert rule.capacity_bytes == pytest.approx(kib * 1024, rel=0.06)
        for kernel_class, rate in FAKE_STREAM_MS_PER_BYTE.items():  # whole models cost 1.1x
            assert rule.rate(kernel_class) == pytest.approx(1.1 * rate, rel=0.1)
    monkeypatch.setenv("TTMPD_FAKE_CACHE_SHAPE", "step")  # a cache that keeps nothing beyond
    rule = get_backend("fake").probe_rules().streaming
    assert rule.shape == "ramp" and rule.capacity_bytes == pytest.approx(8192 * 1024, rel=0.2)
    assert rule.full_bytes <= 1.5 * 8192 * 1024
    monkeypatch.delenv("TTMPD_FAKE_CACHE_KIB")
    assert get_backend("fake").probe_rules().streaming is None
