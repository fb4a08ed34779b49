"""The subset selectors on hand-made logits: entropy against the formula, the streaming quota
of each strategy, and the config's boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ttmpd.distill import SelectionConfig, entropy
from ttmpd.distill._selection import Selector
from ttmpd.errors import InputError


def test_entropy_matches_hand_worked_values():
    # p = (1/4, 3/4, 0) from logits (0, ln 3, -1e4); uniform over 3 classes; a near one-hot row
    logits = torch.tensor([[0.0, math.log(3.0), -1e4], [0.0] * 3, [30.0, 0.0, 0.0]])
    expected = [-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), math.log(3.0), 0.0]
    assert entropy(logits).tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("size", [0, -3, True, 2.5])
def test_size_must_be_a_positive_integer(size):
    with pytest.raises(InputError, match=f"subset size must be a positive integer, got {size!r}"):
        SelectionConfig(size=size)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_entropy_fraction_outside_unit_interval_is_rejected(fraction):
    with pytest.raises(
        InputError,
        match=r"in \(0, 1\], got -?[0-9.]+; 0\.4 keeps predictions with entropy below 0\.4 ln C$",
    ):
        SelectionConfig("reliable", entropy_fraction=fraction)


def test_boundary_configs_are_accepted_and_used():
    assert Selector(SelectionConfig(size=1), 3).offer(None, 4).tolist() == [1, 0, 0, 0]
    uniform = torch.zeros(1, 10)  # entropy ln 10 (float32 a hair below): reliable only at 1
    loose = Selector(SelectionConfig("reliable", size=4, entropy_fraction=1.0), 10)
    assert loose.offer(uniform, 1).tolist() == [True]


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(InputError, match="choose one of: random, balanced, reliable"):
        SelectionConfig("greedy")


def test_selectors_other_than_random_need_logits():
    with pytest.raises(InputError, match="selection 'balanced' needs teacher logits"):
        Selector(SelectionConfig("balanced"), 4).offer(None, 2)


def test_random_takes_the_head_of_each_batch_until_full():
    selector = Selector(SelectionConfig(size=5), num_classes=4)
    masks = [selector.offer(None, 3).tolist() for _ in range(3)]
    assert masks == [[True] * 3, [True, True, False], [False] * 3]
    assert selector.full


def test_balanced_caps_each_pseudo_label_at_ceil_size_over_classes():
    selector = Selector(SelectionConfig("balanced", size=5), num_classes=3)  # quota 2
    labels = [0, 0, 0, 1, 2, 1, 1, 2, 0]
    logits = torch.nn.functional.one_hot(torch.tensor(labels), 3).float() * 10
    take = selector.offer(logits, len(labels))
    # label 0 twice, then 1, 2, 1: the fifth acceptance fills the subset
    assert np.flatnonzero(take).tolist() == [0, 1, 3, 4, 5]
    assert selector.counts.tolist() == [2, 2, 1]


def test_reliable_threshold_is_the_fraction_of_ln_classes():
    # entropies of two-level rows over 10 classes: peak logit a, the rest 0
    rows = torch.zeros(4, 10)
    rows[:, 0] = torch.tensor([9.0, 4.0, 3.0, 0.5])
    h = entropy(rows).tolist()
    threshold = 0.4 * math.log(10)  # 0.921
    assert h[0] < h[1] < threshold < h[2] < h[3]  # the rows straddle the threshold
    selector = Selector(SelectionConfig("reliable", size=10, entropy_fraction=0.4), 10)
    assert selector.offer(rows, 4).tolist() == [True, True, False, False]
    assert selector.accepted == 2


def test_reliable_excludes_an_entropy_exactly_at_the_threshold():
    rows = torch.zeros(1, 10)
    rows[0, 0] = 2.0
    h = entropy(rows)
    fraction = float(h) / math.log(10)
    assert bool(h == fraction * math.log(10))  # the threshold equals the row's entropy
    selector = Selector(SelectionConfig("reliable", size=3, entropy_fraction=fraction), 10)
    assert selector.offer(rows, 1).tolist() == [False]
