"""Multi-similarity loss against a per-anchor loop of Eq. 4 (float64, value and gradient) and PML."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab.objectives.multi_similarity import MultiSimilarityLoss


def _data(b=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, generator=g, dtype=torch.float64, requires_grad=True), torch.arange(b) % 4


def brute(e, labels, alpha, beta, lam):
    u = e / e.norm(dim=1, keepdim=True)
    per = []
    for i in range(len(labels)):
        pos = [u[i] @ u[k] for k in range(len(labels)) if k != i and labels[k] == labels[i]]
        neg = [u[i] @ u[k] for k in range(len(labels)) if labels[k] != labels[i]]
        if not pos:
            continue
        lp = torch.log(1 + sum(torch.exp(-alpha * (s - lam)) for s in pos)) / alpha
        ln = torch.log(1 + sum(torch.exp(beta * (s - lam)) for s in neg)) / beta
        per.append(lp + ln)
    return torch.stack(per).mean()


@pytest.mark.parametrize("alpha, beta, lam", [(2.0, 50.0, 0.5), (1.0, 10.0, 0.0)])
def test_brute_force(alpha, beta, lam):
    e, labels = _data()
    out = MultiSimilarityLoss(alpha, beta, lam)(e, labels)
    ref = brute(e, labels, alpha, beta, lam)
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(torch.autograd.grad(out, e)[0], torch.autograd.grad(ref, e)[0], atol=1e-12)


def test_anchors_without_positive_are_excluded_and_counted():
    e, _ = _data(b=6)
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    f = MultiSimilarityLoss()
    out = f(e, labels)
    assert f.last_stats["anchors_used"] == 4
    assert out.item() == pytest.approx(brute(e, labels, 2.0, 50.0, 0.5).item(), rel=1e-12)


def test_no_overflow_at_large_beta():
    e = torch.tensor([[1.0, 0.0], [1.0, 1e-3], [1.0, 2e-3], [1.0, 3e-3]], requires_grad=True)
    out = MultiSimilarityLoss(beta=1000.0)(e, torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(out)
    assert out.item() == pytest.approx(math.log(1 + math.exp(-1.0)) / 2 + (500 + math.log(2)) / 1000, rel=1e-4)


def test_pml_parity_with_and_without_miner():
    from pytorch_metric_learning.losses import MultiSimilarityLoss as PML
    from pytorch_metric_learning.miners import MultiSimilarityMiner as PMLMiner

    e, labels = _data(b=16, seed=1)
    ours = MultiSimilarityLoss()(e, labels)
    e2 = e.detach().clone().requires_grad_(True)
    ref = PML()(e2, labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(torch.autograd.grad(ours, e)[0], torch.autograd.grad(ref, e2)[0], atol=1e-10)
    mined = PMLMiner()(e.detach(), labels)
    assert len(set(mined[0].tolist())) == 16  # every row keeps a mined positive: PML's mean is over the same rows
    ours_m = MultiSimilarityLoss(miner="multi-similarity")(e.detach(), labels)
    ref_m = PML()(e.detach(), labels, mined)
    assert ours_m.item() == pytest.approx(ref_m.item(), rel=1e-10)
    assert ours_m.item() != pytest.approx(ours.item(), rel=1e-6)  # the miner did change the pairs
