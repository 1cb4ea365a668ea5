"""Batch semi-hard miner against a per-pair loop of the TF-Addons / FaceNet rule."""

from __future__ import annotations

import pytest
import torch

from pairlab.miners import BatchSemiHardMiner


def _data(seed=0, b=14):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, generator=g, dtype=torch.float64), torch.arange(b) % 3


def brute(e, labels, fallback, margin):
    u = e / e.norm(dim=1, keepdim=True)
    d = torch.cdist(u, u)
    out = set()
    n = len(labels)
    for a in range(n):
        negs = [j for j in range(n) if labels[j] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            band = [j for j in negs if d[a, j] > d[a, p] and (margin is None or d[a, j] < d[a, p] + margin)]
            if band:
                out.add((a, p, min(band, key=lambda j: d[a, j].item())))
            elif margin is None and fallback == "farthest" and negs:
                out.add((a, p, max(negs, key=lambda j: d[a, j].item())))
    return out


@pytest.mark.parametrize("fallback, margin", [("farthest", None), ("drop", None), ("farthest", 0.2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brute_force(fallback, margin, seed):
    e, labels = _data(seed)
    m = BatchSemiHardMiner(fallback=fallback, margin=margin)(e, labels)
    assert set(zip(*(t.tolist() for t in m.as_tuple()), strict=True)) == brute(e, labels, fallback, margin)
    assert len(m.a1) == len(set(zip(m.a1.tolist(), m.p.tolist(), strict=True)))  # one triplet per pair


def test_fallback_is_exercised():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.99, 0.1], [0.98, 0.2]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])  # anchor 0's positive is farther than both negatives
    m = BatchSemiHardMiner(fallback="farthest")(e, labels)
    assert (0, 1, 3) in set(zip(*(t.tolist() for t in m.as_tuple()), strict=True))
    m2 = BatchSemiHardMiner(fallback="drop")(e, labels)
    assert 0 not in m2.a1.tolist()
