"""Batch-hard miner against a per-anchor loop and PML ``BatchHardMiner``."""

from __future__ import annotations

import pytest
import torch

from pairlab.miners import BatchHardMiner


def _data(seed=0, b=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 6, generator=g, dtype=torch.float64), torch.arange(b) % 4


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_brute_force(metric):
    e, labels = _data()
    m = BatchHardMiner(metric=metric)(e, labels)
    u = e / e.norm(dim=1, keepdim=True)
    got = set(zip(m.a1.tolist(), m.p.tolist(), m.n.tolist(), strict=True))
    ref = set()
    for a in range(16):
        dist = [((u[a] - u[j]).norm() if metric == "euclidean" else -(u[a] @ u[j])).item() for j in range(16)]
        ps = [j for j in range(16) if j != a and labels[j] == labels[a]]
        ns = [j for j in range(16) if labels[j] != labels[a]]
        ref.add((a, max(ps, key=lambda j: dist[j]), min(ns, key=lambda j: dist[j])))
    assert got == ref


@pytest.mark.parametrize("seed", [0, 1])
def test_pml_parity(seed):
    from pytorch_metric_learning.miners import BatchHardMiner as PML

    e, labels = _data(seed)
    m = BatchHardMiner()(e, labels)
    r = PML()(e, labels)
    assert set(zip(*(t.tolist() for t in m.as_tuple()), strict=True)) == set(zip(*(t.tolist() for t in r), strict=True))


def test_anchor_without_positive_is_skipped():
    e, _ = _data(b=5)
    m = BatchHardMiner()(e, torch.tensor([0, 0, 1, 2, 2]))
    assert 2 not in m.a1.tolist() and len(m.a1) == 4
