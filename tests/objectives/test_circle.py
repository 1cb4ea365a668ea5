"""Circle loss against a per-anchor loop of Eq. 6 (float64, value and gradient) and PML."""

from __future__ import annotations

import pytest
import torch

from pairlab.objectives.circle import CircleLoss


def _data(b=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, generator=g, dtype=torch.float64, requires_grad=True), torch.arange(b) % 4


def brute(e, labels, m, gamma, detach=True):
    u = e / e.norm(dim=1, keepdim=True)
    per = []
    for i in range(len(labels)):
        sp = [u[i] @ u[k] for k in range(len(labels)) if k != i and labels[k] == labels[i]]
        sn = [u[i] @ u[k] for k in range(len(labels)) if labels[k] != labels[i]]
        if not sp or not sn:
            continue
        w = (lambda s: s.detach()) if detach else (lambda s: s)
        lp = [-gamma * torch.relu(1 + m - w(s)) * (s - (1 - m)) for s in sp]
        ln = [gamma * torch.relu(w(s) + m) * (s - m) for s in sn]
        per.append(torch.nn.functional.softplus(torch.logsumexp(torch.stack(lp), 0)
                                                + torch.logsumexp(torch.stack(ln), 0)))
    return torch.stack(per).mean()


@pytest.mark.parametrize("m, gamma", [(0.4, 80.0), (0.25, 256.0), (0.1, 2.0)])
@pytest.mark.parametrize("detach", [True, False])
def test_brute_force(m, gamma, detach):
    e, labels = _data()
    out = CircleLoss(m, gamma, detach_weights=detach)(e, labels)
    ref = brute(e, labels, m, gamma, detach)
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(torch.autograd.grad(out, e)[0], torch.autograd.grad(ref, e)[0], atol=1e-10)


def test_pml_parity():
    from pytorch_metric_learning.losses import CircleLoss as PML

    e, labels = _data(b=16, seed=1)
    ours = CircleLoss()(e, labels)
    e2 = e.detach().clone().requires_grad_(True)
    ref = PML()(e2, labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(torch.autograd.grad(ours, e)[0], torch.autograd.grad(ref, e2)[0], atol=1e-10)
