"""Distance-weighted sampling: the sampling distribution against the closed form of Wu et al. (Sec. 4),
empirical frequencies, cutoffs, the uniform fallback and seeding."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab.miners import DistanceWeightedMiner


def _data(b=12, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, dim, generator=g, dtype=torch.float64), torch.arange(b) % 3


def closed_form_probs(e, labels, a, cutoff=0.5, nz=1.4):
    u = e / e.norm(dim=1, keepdim=True)
    n = e.shape[1]
    w = {}
    for j in range(len(labels)):
        if labels[j] == labels[a]:
            continue
        d = (u[a] - u[j]).norm().item()
        if d >= nz:
            continue
        dc = max(d, cutoff)
        w[j] = dc ** (2 - n) * (1 - dc * dc / 4) ** (-(n - 3) / 2)
    tot = sum(w.values())
    return {j: v / tot for j, v in w.items()}


def test_log_weights_match_closed_form():
    e, labels = _data()
    miner = DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4, seed=0)
    miner(e, labels)  # sets the embedding dim
    u = e / e.norm(dim=1, keepdim=True)
    d = torch.cdist(u, u)
    neg = labels[:, None] != labels[None, :]
    lw = miner.log_weights(d, neg)
    probs = (lw - torch.logsumexp(lw, dim=1, keepdim=True)).exp()
    for a in range(12):
        ref = closed_form_probs(e, labels, a)
        for j in range(12):
            assert probs[a, j].item() == pytest.approx(ref.get(j, 0.0), abs=1e-12)


def test_empirical_frequencies_follow_the_weights():
    e, labels = _data(b=9, dim=4, seed=1)
    miner = DistanceWeightedMiner(nonzero_loss_cutoff=2.0, seed=0)
    counts = torch.zeros(9, 9)
    for _ in range(400):
        m = miner(e, labels)
        counts.index_put_((m.a1, m.n), torch.ones(len(m.a1)), accumulate=True)
    a = 0
    ref = closed_form_probs(e, labels, a, nz=2.0)
    total = counts[a].sum().item()
    for j, pj in ref.items():
        sd = math.sqrt(pj * (1 - pj) / total)
        assert abs(counts[a, j].item() / total - pj) < 5 * sd + 1e-9


def test_one_negative_per_positive_pair_and_seeded():
    e, labels = _data()
    m1 = DistanceWeightedMiner(seed=3)(e, labels)
    m2 = DistanceWeightedMiner(seed=3)(e, labels)
    pos_pairs = sum(int((labels == labels[i]).sum()) - 1 for i in range(12))
    assert len(m1.a1) == pos_pairs
    assert torch.equal(m1.n, m2.n)
    assert (labels[m1.n] != labels[m1.a1]).all()


def test_uniform_fallback_when_every_negative_is_beyond_the_cutoff():
    e, labels = _data()
    m = DistanceWeightedMiner(nonzero_loss_cutoff=1e-3, seed=0)(e, labels)
    assert len(m.a1) > 0 and (labels[m.n] != labels[m.a1]).all()
