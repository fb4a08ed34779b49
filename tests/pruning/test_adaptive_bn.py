"""Adaptive BN: one recalibration pass gives the same outputs as recalibrate + eval pass."""

import copy

import pytest
import torch
from nets import ResidualNet

from ttmpd.pruning import ChannelMasker, adapt_bn, channel_groups
from ttmpd.pruning._bn import adaptive_bn_logits

X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
IMAGES = torch.randn(48, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 + 0.5


def _two_pass(model, images):
    adapt_bn(model, images)
    with torch.no_grad():
        return model(images)


@pytest.mark.parametrize("batch_size", [128, 16])  # one batch (shortcut) and several
def test_one_pass_equals_adapt_then_eval(batch_size):
    torch.manual_seed(0)
    net = ResidualNet().eval()
    groups = channel_groups(net, X)
    removed = {g.id: [0, 2] for g in groups if g.prunable}
    a = ChannelMasker(net, groups).masked(removed)
    b = copy.deepcopy(a)
    fast = adaptive_bn_logits(a, IMAGES, batch_size)
    slow = _two_pass(b, IMAGES) if batch_size >= len(IMAGES) else None
    if slow is None:  # several batches: the function must fall back to the two-pass result
        adapt_bn(b, IMAGES, batch_size)
        with torch.no_grad():
            slow = b(IMAGES)
    torch.testing.assert_close(fast, slow, rtol=1e-3, atol=1e-3)
    assert not a.training  # handed back in eval mode
    for ma, mb in zip(a.modules(), b.modules(), strict=True):  # same running statistics
        if isinstance(ma, torch.nn.BatchNorm2d):
            torch.testing.assert_close(ma.running_mean, mb.running_mean)
            torch.testing.assert_close(ma.running_var, mb.running_var)


def test_the_old_name_of_adapt_bn_still_resolves_with_a_warning():
    import ttmpd.pruning as pruning

    with pytest.warns(DeprecationWarning, match="adapt_bn"):
        assert pruning.recalibrate_bn is pruning.adapt_bn
