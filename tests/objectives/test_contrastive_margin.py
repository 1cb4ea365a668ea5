"""Contrastive margin loss against a per-pair loop (float64, value and gradient) and PML."""

from __future__ import annotations

import pytest
import torch

from pairlab.objectives.contrastive_margin import ContrastiveLoss


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(10, 5, generator=g, dtype=torch.float64, requires_grad=True), torch.arange(10) % 3


def brute(e, labels, pm, nm, power, metric, reduction):
    u = e / e.norm(dim=1, keepdim=True)
    pos, neg = [], []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i == j:
                continue
            if metric == "euclidean":
                d = (u[i] - u[j]).norm()
                lp, ln = torch.relu(d - pm), torch.relu(nm - d)
            else:
                s = u[i] @ u[j]
                lp, ln = torch.relu(pm - s), torch.relu(s - nm)
            (pos if labels[i] == labels[j] else neg).append(lp ** power if labels[i] == labels[j] else ln ** power)

    def red(v):
        v = torch.stack(v)
        if reduction == "mean":
            return v.mean()
        nz = (v > 0).sum()
        return v.sum() / nz if nz else v.sum() * 0

    return red(pos) + red(neg)


@pytest.mark.parametrize("metric, pm, nm", [("euclidean", 0.0, 1.0), ("euclidean", 0.6, 1.3), ("cosine", 0.8, 0.1)])
@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("reduction", ["mean", "mean_nonzero"])
def test_brute_force(metric, pm, nm, power, reduction):
    e, labels = _data()
    out = ContrastiveLoss(pm, nm, power, metric=metric, reduction=reduction)(e, labels)
    ref = brute(e, labels, pm, nm, power, metric, reduction)
    (g,) = torch.autograd.grad(out, e)
    (gr,) = torch.autograd.grad(ref, e)
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(g, gr, atol=1e-12)


@pytest.mark.parametrize("kw", [{}, {"pos_margin": 0.3, "neg_margin": 0.9}])
def test_pml_parity(kw):
    from pytorch_metric_learning.losses import ContrastiveLoss as PML

    e, labels = _data(1)
    out = ContrastiveLoss(**kw)(e, labels)
    e2 = e.detach().clone().requires_grad_(True)
    ref = PML(**kw)(e2, labels)
    assert out.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(torch.autograd.grad(out, e)[0], torch.autograd.grad(ref, e2)[0], atol=1e-10)


def test_pair_margin_miner_parity_with_pml():
    from pytorch_metric_learning.losses import ContrastiveLoss as PML
    from pytorch_metric_learning.miners import PairMarginMiner as PMLMiner

    e, labels = _data(2)
    out = ContrastiveLoss(miner="pair-margin")(e, labels)
    ref = PML()(e.detach(), labels, PMLMiner()(e.detach(), labels))
    assert out.item() == pytest.approx(ref.item(), rel=1e-10)


def test_duplicate_embeddings_have_finite_gradient():
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    out = ContrastiveLoss(pos_margin=0.0, neg_margin=2.0, reduction="mean")(e, torch.tensor([0, 0, 1]))
    (g,) = torch.autograd.grad(out, e)
    assert torch.isfinite(g).all()
