from __future__ import annotations

import pytest
import torch

from pairlab import pairs


def test_flatten_is_sample_major():
    z = torch.arange(2 * 3 * 1.0).reshape(2, 3, 1)
    zf, ids = pairs.flatten_views(z)
    assert zf[:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert ids.tolist() == [0, 0, 0, 1, 1, 1]


def test_view_targets_loop():
    zf, p, v = pairs.view_targets(torch.randn(3, 2, 4))
    for i in range(6):
        for j in range(6):
            assert bool(v[i, j]) == (i != j)
            assert bool(p[i, j]) == (i != j and i // 2 == j // 2)


def test_label_targets_loop():
    labels = torch.tensor([1, 0, 1])
    _, p, v = pairs.label_targets(torch.randn(3, 2, 4), labels)
    lab = labels.repeat_interleave(2)
    for i in range(6):
        for j in range(6):
            assert bool(p[i, j]) == (i != j and lab[i] == lab[j])


def test_not_self_with_offset():
    v = pairs.not_self(2, 5, offset=3)
    assert v.tolist() == [[True, True, True, False, True], [True, True, True, True, False]]


def test_soft_targets_validation():
    with pytest.raises(ValueError, match=">= 0"):
        pairs.soft_targets(-torch.ones(2, 2), 2, 2)
    with pytest.raises(ValueError, match=r"shape \[2, 3\]"):
        pairs.soft_targets(torch.ones(2, 2), 2, 3)
    t = pairs.targets_from_function(
        lambda a, b: (a == b).double() + 0.5 * (a // 2 == b // 2).double(), torch.arange(4), torch.arange(4)
    )
    assert t[0, 0] == 1.5 and t[0, 1] == 0.5 and t[0, 2] == 0
