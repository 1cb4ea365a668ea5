"""Batch easy-hard miner against PML ``BatchEasyHardMiner`` for every strategy combination."""

from __future__ import annotations

import pytest
import torch

from pairlab.miners import BatchEasyHardMiner

COMBOS = [("easy", "semihard"), ("hard", "hard"), ("easy", "easy"), ("semihard", "hard"), ("all", "hard"),
          ("easy", "all"), ("all", "all"), ("hard", "semihard")]


def _sets(t):
    if len(t) == 3:
        return set(zip(*(x.tolist() for x in t), strict=True))
    return (set(zip(t[0].tolist(), t[1].tolist(), strict=True)), set(zip(t[2].tolist(), t[3].tolist(), strict=True)))


@pytest.mark.parametrize("pos, neg", COMBOS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pml_parity(pos, neg, metric):
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.miners import BatchEasyHardMiner as PML

    g = torch.Generator().manual_seed(0)
    e, labels = torch.randn(18, 5, generator=g, dtype=torch.float64), torch.arange(18) % 4
    ours = BatchEasyHardMiner(pos, neg, metric=metric)(e, labels)
    dist = LpDistance() if metric == "euclidean" else CosineSimilarity()
    a1, p, a2, n = PML(pos_strategy=pos, neg_strategy=neg, distance=dist)(e, labels)
    if ours.is_triplets:
        assert torch.equal(a1, a2)
        assert _sets(ours.as_tuple()) == _sets((a1, p, n))
    else:
        assert _sets(ours.as_tuple()) == _sets((a1, p, a2, n))


def test_allowed_ranges_filter_raw_values():
    g = torch.Generator().manual_seed(1)
    e, labels = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.arange(12) % 3
    m = BatchEasyHardMiner("all", "all", allowed_neg_range=(0.0, 1.0))(e, labels)
    u = e / e.norm(dim=1, keepdim=True)
    assert ((u[m.a2] - u[m.n]).norm(dim=1) <= 1.0).all()


def test_invalid_combinations():
    with pytest.raises(ValueError, match="both be 'semihard'"):
        BatchEasyHardMiner("semihard", "semihard")
    with pytest.raises(ValueError, match="cannot be combined"):
        BatchEasyHardMiner("all", "semihard")
    with pytest.raises(ValueError, match="pos_strategy must be one of"):
        BatchEasyHardMiner("medium")
