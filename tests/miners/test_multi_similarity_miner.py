"""Multi-similarity miner against the Eq. 5-6 rule in a loop and PML ``MultiSimilarityMiner``."""

from __future__ import annotations

import pytest
import torch

from pairlab.miners import MultiSimilarityMiner


def _data(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(15, 4, generator=g, dtype=torch.float64), torch.arange(15) % 4


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_brute_force(eps):
    e, labels = _data(0)
    u = e / e.norm(dim=1, keepdim=True)
    s = u @ u.T
    pos, neg = set(), set()
    for i in range(15):
        ps = [j for j in range(15) if j != i and labels[j] == labels[i]]
        ns = [j for j in range(15) if labels[j] != labels[i]]
        pos |= {(i, j) for j in ps if s[i, j] - eps < max(s[i, k] for k in ns)}
        neg |= {(i, k) for k in ns if s[i, k] + eps > min(s[i, j] for j in ps)}
    m = MultiSimilarityMiner(eps)(e, labels)
    assert set(zip(m.a1.tolist(), m.p.tolist(), strict=True)) == pos
    assert set(zip(m.a2.tolist(), m.n.tolist(), strict=True)) == neg


@pytest.mark.parametrize("seed", [0, 1])
def test_pml_parity(seed):
    from pytorch_metric_learning.miners import MultiSimilarityMiner as PML

    e, labels = _data(seed)
    m = MultiSimilarityMiner(0.1)(e, labels)
    a1, p, a2, n = PML(0.1)(e, labels)
    assert set(zip(m.a1.tolist(), m.p.tolist(), strict=True)) == set(zip(a1.tolist(), p.tolist(), strict=True))
    assert set(zip(m.a2.tolist(), m.n.tolist(), strict=True)) == set(zip(a2.tolist(), n.tolist(), strict=True))
