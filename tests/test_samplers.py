"""Samplers: m-per-class batch composition and determinism, every anchor gets a positive (no raise in
the margin losses), no-duplicates batches checked value by value against the data."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pairlab.objectives.triplet import TripletMarginLoss
from pairlab.samplers import MPerClassSampler, NoDuplicatesBatchSampler


def _labels(n=200, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (n,), generator=g)


def test_m_per_class_composition():
    labels = _labels()
    s = MPerClassSampler(labels, m=4, batch_size=32)
    assert len(s) == 200 // 32
    batches = list(s)
    assert len(batches) == len(s)
    for b in batches:
        assert len(b) == 32 and len(set(b)) == 32  # classes here have >= 4 items: no repeats
        counts = torch.bincount(labels[b], minlength=10)
        assert sorted(counts[counts > 0].tolist()) == [4] * 8


def test_m_per_class_small_class_is_drawn_with_replacement():
    labels = torch.tensor([0, 1, 1, 1, 2, 2, 2, 2])
    s = MPerClassSampler(labels, m=3, batch_size=9, num_batches=5, seed=1)
    for b in s:
        assert torch.bincount(labels[b], minlength=3).tolist() == [3, 3, 3]
        assert b.count(0) == 3


def test_m_per_class_determinism_and_epochs():
    labels = _labels()
    a = list(MPerClassSampler(labels, 2, 20, seed=3))
    b = list(MPerClassSampler(labels, 2, 20, seed=3))
    assert a == b
    s = MPerClassSampler(labels, 2, 20, seed=3)
    s.set_epoch(1)
    assert list(s) != a


def test_m_per_class_batches_always_have_positives_for_the_losses():
    labels = _labels(n=64, classes=8, seed=2)
    x = torch.randn(64, 5)
    loader = DataLoader(TensorDataset(x, labels), batch_sampler=MPerClassSampler(labels, 2, 16, num_batches=10))
    loss = TripletMarginLoss(margin=0.2, miner="batch-hard")
    for xb, yb in loader:
        assert torch.isfinite(loss(xb, yb))  # raises on a batch without positives
        assert loss.last_stats["triplets"] == 16


@pytest.mark.parametrize("kw, match", [({"m": 0, "batch_size": 4}, "m must be"),
                                       ({"m": 3, "batch_size": 4}, "multiple of m"),
                                       ({"m": 2, "batch_size": 40}, "classes per batch")])
def test_m_per_class_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        MPerClassSampler(_labels(), **kw)
    with pytest.raises(ValueError, match="1-D integer"):
        MPerClassSampler(torch.zeros(4, 2, dtype=torch.long), 2, 4)


def _pairs(n=60, vocab=25, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, vocab, (n,), generator=g).tolist()
    p = torch.randint(0, vocab, (n,), generator=g).tolist()
    return [(f"q{x}", f"d{y}") for x, y in zip(a, p, strict=True)]


@pytest.mark.parametrize("bs", [4, 8])
def test_no_duplicates_batches(bs):
    rows = _pairs()
    s = NoDuplicatesBatchSampler(rows, batch_size=bs, seed=0)
    batches = list(s)
    seen_items = [i for b in batches for i in b]
    assert sorted(seen_items) == list(range(len(rows)))  # every item exactly once
    for b in batches:
        vals = [v for i in b for v in rows[i]]
        assert len(vals) == len(set(vals))
    assert all(len(b) == bs for b in batches[:-3])  # only the tail may be short


def test_no_duplicates_values_shared_across_columns_and_drop_last():
    rows = [("a", "b"), ("b", "c"), ("c", "d"), ("e", "f"), ("g", "h")]
    for seed in range(5):
        for b in NoDuplicatesBatchSampler(rows, batch_size=2, seed=seed):
            vals = [v for i in b for v in rows[i]]
            assert len(vals) == len(set(vals))
    dropped = list(NoDuplicatesBatchSampler(rows, batch_size=2, drop_last=True, seed=0))
    assert all(len(b) == 2 for b in dropped)
    strings = NoDuplicatesBatchSampler(["x", "y", "x", "z"], batch_size=4)
    assert [sorted(b) for b in strings][0] in ([0, 1, 3], [1, 2, 3])


def test_no_duplicates_determinism_and_bad_input():
    rows = _pairs()
    assert list(NoDuplicatesBatchSampler(rows, 8, seed=1)) == list(NoDuplicatesBatchSampler(rows, 8, seed=1))
    with pytest.raises(ValueError, match="batch_size"):
        NoDuplicatesBatchSampler(rows, 0)
    with pytest.raises(TypeError, match="hashable"):
        NoDuplicatesBatchSampler([(["list"], "x")], 2)
