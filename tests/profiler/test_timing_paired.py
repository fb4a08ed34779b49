"""measure_paired: two runners sample by sample in alternation."""

import numpy as np
import pytest
import torch
from nets import ResidualNet

from ttmpd.profiler import BackendConfig, TimingConfig, get_backend, measure
from ttmpd.profiler._timing import measure_paired


class Host:
    """A host whose speed halves after ``slow_after`` calls, and runners on it whose first
    call after the other runner ran costs ``cold_ms`` extra (cold caches)."""

    def __init__(self, slow_after: int = 10**9, cold_ms: float = 0.0) -> None:
        self.calls, self.slow_after, self.cold_ms, self.last = 0, slow_after, cold_ms, None

    def runner(self, name: str, per_call_ms: float):
        def run(number: int) -> float:
            total = 0.0
            for _ in range(number):
                slow = 2.0 if self.calls >= self.slow_after else 1.0
                cold = self.cold_ms if self.last != name else 0.0
                total += slow * per_call_ms + cold
                self.calls, self.last = self.calls + 1, name
            return total

        return run


CONFIG = TimingConfig(min_samples=9, max_samples=400, max_seconds=30.0, target_rel_ci=0.001,
                      min_sample_ms=0.1, pair_sample_ms=2.0)  # fmt: skip


def test_a_host_slowdown_cancels_in_the_paired_ratio_but_skews_blocks():
    host = Host(slow_after=40)
    ref, other = host.runner("ref", 1.0), host.runner("other", 0.5)
    paired = measure_paired(ref, other, CONFIG)
    assert host.calls > host.slow_after + 20  # pairs ran before and after the slowdown
    assert paired.ratio == pytest.approx(0.5, rel=1e-9)
    # timed block after block, the second block runs on the slowed host
    host = Host(slow_after=15)
    ref, other = host.runner("ref", 1.0), host.runner("other", 0.5)
    blocked = measure(other, CONFIG).median_ms / measure(ref, CONFIG).median_ms
    assert blocked != pytest.approx(0.5, rel=0.1)


def test_each_sample_is_warmed_after_the_other_runner_ran():
    host = Host(cold_ms=0.3)
    paired = measure_paired(host.runner("ref", 1.0), host.runner("other", 0.5), CONFIG)
    assert paired.ratio == pytest.approx(0.5, rel=1e-9)  # no cold call is timed
    host = Host(cold_ms=0.3)
    cold = TimingConfig(**{**CONFIG.__dict__, "round_warmup_runs": 0})
    biased = measure_paired(host.runner("ref", 1.0), host.runner("other", 0.5), cold)
    assert biased.ratio != pytest.approx(0.5, rel=0.01)  # without the warm-up call


def test_a_paired_sample_lasts_at_least_pair_sample_ms():
    paired = measure_paired(lambda n: 0.1 * n, lambda n: 0.3 * n, CONFIG)
    assert paired.reference.number * 0.1 >= CONFIG.pair_sample_ms
    assert paired.other.number * 0.3 >= CONFIG.pair_sample_ms
    assert paired.ratio == pytest.approx(3.0)


def test_a_backend_that_computes_latencies_pairs_its_two_figures():
    fake = get_backend("fake")
    net, x = ResidualNet().eval(), torch.randn(1, 3, 8, 8)
    paired = fake.measure_paired(net, net, x)
    assert paired.ratio == pytest.approx(1.0) and paired.ratio_rel_ci == 0.0
    assert paired.reference.median_ms == fake.measure_model(net, x).median_ms


def test_torch_cpu_pairs_a_model_against_itself_near_one():
    backend = get_backend("torch-cpu", BackendConfig(threads=1))
    net, x = ResidualNet().eval(), torch.randn(1, 3, 16, 16)
    quick = TimingConfig(min_samples=15, max_seconds=0.5, pair_sample_ms=1.0)
    paired = backend.measure_paired(net, net, x, quick)
    assert 0.8 < paired.ratio < 1.25
    assert paired.reference.samples == paired.other.samples >= 15


def jittery(per_call_ms: float, seed: int):
    """A runner whose calls vary ±20% at random (seeded)."""
    rng = np.random.default_rng(seed)
    return lambda n: float(per_call_ms * n * rng.uniform(0.8, 1.2))


def test_sampling_stops_once_the_ratio_is_clear_of_the_thresholds():
    tight = TimingConfig(**{**CONFIG.__dict__, "max_samples": 200, "target_rel_ci": 1e-6})
    full = measure_paired(jittery(1.0, 0), jittery(0.5, 1), tight)
    assert full.reference.samples == 200  # a 1e-6 CI is never reached
    clear = measure_paired(jittery(1.0, 0), jittery(0.5, 1), tight, thresholds=(0.8, 0.9))
    assert clear.reference.samples < 30 and clear.ratio == pytest.approx(0.5, rel=0.15)
    # a threshold at the ratio itself is never cleared: sampling runs on
    near = measure_paired(jittery(1.0, 0), jittery(0.5, 1), tight, thresholds=(0.5,))
    assert near.reference.samples > 100
