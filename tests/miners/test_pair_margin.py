"""Pair-margin miner against PML ``PairMarginMiner`` (distance and similarity)."""

from __future__ import annotations

import pytest
import torch

from pairlab.miners import PairMarginMiner


@pytest.mark.parametrize("metric, pm, nm", [("euclidean", 0.2, 0.8), ("euclidean", 1.0, 1.2), ("cosine", 0.5, 0.1)])
def test_pml_parity(metric, pm, nm):
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.miners import PairMarginMiner as PML

    g = torch.Generator().manual_seed(0)
    e, labels = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.arange(16) % 3
    m = PairMarginMiner(pm, nm, metric=metric)(e, labels)
    dist = LpDistance() if metric == "euclidean" else CosineSimilarity()
    a1, p, a2, n = PML(pm, nm, distance=dist)(e, labels)
    assert set(zip(m.a1.tolist(), m.p.tolist(), strict=True)) == set(zip(a1.tolist(), p.tolist(), strict=True))
    assert set(zip(m.a2.tolist(), m.n.tolist(), strict=True)) == set(zip(a2.tolist(), n.tolist(), strict=True))
    assert len(m.a1) + len(m.a2) > 0
