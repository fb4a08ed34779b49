"""Weight streaming: the probe's fit, the rule's record, the fake device's emulation."""

import numpy as np
import pytest

from ttmpd.errors import InputError
from ttmpd.profiler import DeviceRules, get_backend
from ttmpd.profiler._streaming import (
    CHAIN_LAYERS,
    WeightStreamingRule,
    fit_streaming,
    streaming_chain,
)
from ttmpd.profiler.backends.fake import FAKE_STREAM_MS_PER_BYTE

LAYER_BYTES = 400 * 400 * 4


def chain_samples(capacity: float, rates: dict[str, float], h=0.01, o=0.003):
    """Per-layer latencies of chains under the streaming model, exactly."""
    out = []
    for kernel_class, s in rates.items():
        for k in CHAIN_LAYERS:
            f = k * LAYER_BYTES
            out.append((kernel_class, f, h + o / k + s * LAYER_BYTES * max(0.0, 1 - capacity / f)))
    return out


@pytest.mark.parametrize("capacity_mib", [1.5, 6.0, 12.0])
def test_the_fit_recovers_capacity_and_each_class_rate(capacity_mib):
    rates = {"blocked": 2e-8, "other": 9e-8}
    rule = fit_streaming(chain_samples(capacity_mib * 2**20, rates))
    assert rule.capacity_bytes == pytest.approx(capacity_mib * 2**20, rel=0.05)
    assert rule.rate("blocked") == pytest.approx(2e-8, rel=0.1)
    assert rule.rate("other") == pytest.approx(9e-8, rel=0.1)
    assert rule.streams and rule.probed_max_bytes == 64 * LAYER_BYTES


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


def test_a_negative_rate_is_refused():
    with pytest.raises(InputError, match="non-negative"):
        WeightStreamingRule(1e6, (("other", -1e-9),))


def test_device_rules_keep_the_streaming_rule_and_read_tables_without_one():
    rule = WeightStreamingRule(4e6, (("other", 5e-8),), 4e7, (("other", 1e6, 0.01),))
    rules = DeviceRules(call_overhead_ms=0.002, streaming=rule)
    back = DeviceRules.from_dict(rules.to_dict())
    assert back == rules
    assert "beyond 3.8 MiB" in back.describe()
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
    monkeypatch.delenv("TTMPD_FAKE_CACHE_KIB")
    assert get_backend("fake").probe_rules().streaming is None
