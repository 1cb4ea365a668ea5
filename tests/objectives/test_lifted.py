"""Lifted structure loss against a per-positive-pair loop of Eq. 4 (float64, value and gradient) and
PML, whose pair-indexed mask is O(P*N)."""

from __future__ import annotations

import pytest
import torch

from pairlab.objectives.lifted import LiftedStructureLoss


def _data(b=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, generator=g, dtype=torch.float64, requires_grad=True), torch.arange(b) % 4


def brute(e, labels, neg_margin, pos_margin, metric="euclidean"):
    u = e / e.norm(dim=1, keepdim=True)

    def dist(i, j):
        return (u[i] - u[j]).norm() if metric == "euclidean" else -(u[i] @ u[j])

    nm = neg_margin if metric == "euclidean" else -neg_margin
    pm = pos_margin if metric == "euclidean" else -pos_margin
    n = len(labels)
    per = []
    for i in range(n):
        for j in range(n):
            if i == j or labels[i] != labels[j]:
                continue
            terms = [nm - dist(i, k) for k in range(n) if labels[k] != labels[i]]
            terms += [nm - dist(j, k) for k in range(n) if labels[k] != labels[j]]
            jij = torch.logsumexp(torch.stack(terms), 0) + dist(i, j) - pm
            per.append(torch.relu(jij) ** 2 / 2)
    return torch.stack(per).mean()


@pytest.mark.parametrize("metric, nm, pm", [("euclidean", 1.0, 0.0), ("euclidean", 0.5, 0.2), ("cosine", 0.2, 0.9)])
def test_brute_force(metric, nm, pm):
    e, labels = _data()
    out = LiftedStructureLoss(nm, pm, metric=metric)(e, labels)
    ref = brute(e, labels, nm, pm, metric)
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(torch.autograd.grad(out, e)[0], torch.autograd.grad(ref, e)[0], atol=1e-12)


@pytest.mark.parametrize("kw", [{}, {"neg_margin": 0.5, "pos_margin": 0.1}])
def test_pml_parity(kw):
    from pytorch_metric_learning.losses import LiftedStructureLoss as PML

    e, labels = _data(b=16, seed=1)
    ours = LiftedStructureLoss(**kw)(e, labels)
    e2 = e.detach().clone().requires_grad_(True)
    ref = PML(**kw)(e2, labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(torch.autograd.grad(ours, e)[0], torch.autograd.grad(ref, e2)[0], atol=1e-10)
