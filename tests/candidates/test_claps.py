"""CLAPS: perturbation directions (orderings of the spec), unit steps, loss vs a loop, candidates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pairlab import registry
from pairlab.candidates.claps import LatentAdversarialPairs, claps_loss, latent_adversarial_pairs
from pairlab.objectives import NTXent


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    b, t, d, v = 4, 6, 16, 30
    head = torch.nn.Linear(d, v).double()
    proj = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU()).double()
    h = torch.randn(b, t, d, dtype=torch.float64, requires_grad=True)
    enc = torch.randn(b, t, d, dtype=torch.float64)
    y = torch.randint(v, (b, t))
    doc = proj(enc).mean(1).detach()

    def nll(x):
        return F.cross_entropy(head(x).reshape(-1, v), y.reshape(-1))

    def pooled(x):
        return proj(x).mean(1)

    def contrast(x):
        return F.cross_entropy(F.normalize(doc, dim=-1) @ F.normalize(pooled(x), dim=-1).T / 0.1, torch.arange(b))

    def kl(x0, x1):
        p = F.log_softmax(head(x0), -1).detach()
        return F.kl_div(F.log_softmax(head(x1), -1), p, log_target=True, reduction="sum") / (b * t)

    return h, doc, nll, contrast, kl, pooled


def test_orderings_of_the_spec_reference() -> None:
    h, doc, nll, contrast, kl, pooled = _setup()
    h_pos, h_neg = latent_adversarial_pairs(h, nll, contrast, kl, eps_neg=1.0, eps_pos=3.0)
    g1 = _grad(contrast, h)
    step1 = h.detach() + 3.0 * g1 / (g1.norm(dim=-1, keepdim=True) + 1e-12)
    torch.set_grad_enabled(False)
    try:
        _check_orderings(h, h_pos, h_neg, step1, doc, nll, contrast, kl, pooled)
    finally:
        torch.set_grad_enabled(True)


def _check_orderings(h, h_pos, h_neg, step1, doc, nll, contrast, kl, pooled) -> None:
    assert float(nll(h_neg.detach())) > float(nll(h.detach()))  # the imposter raises the NLL
    assert float(kl(h.detach(), h_pos.detach())) < float(kl(h.detach(), step1))  # corrective step restores p
    cos = F.cosine_similarity
    c_clean = cos(doc, pooled(h.detach())).mean()
    assert cos(doc, pooled(h_pos.detach())).mean() < c_clean  # the positive is farther from the source
    assert float(contrast(h_pos.detach())) > float(contrast(h.detach()))
    # the imposter step has the prescribed per-token size eps_neg = 1
    assert torch.allclose((h_neg - h).detach().norm(dim=-1), torch.ones(4, 6, dtype=torch.float64), atol=1e-9)


def _grad(fn, h):
    x = h.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x), x)
    return g


def test_perturbations_are_constants_and_gradients_reach_h() -> None:
    h, doc, nll, contrast, kl, pooled = _setup(1)
    h_pos, h_neg = latent_adversarial_pairs(h, nll, contrast, kl)
    (g,) = torch.autograd.grad((h_pos.sum() + 2 * h_neg.sum()), h)
    assert torch.allclose(g, torch.full_like(g, 3.0))
    assert h.grad is None


@pytest.mark.parametrize("scale", [False, True])
def test_claps_loss_equals_loop(scale: bool) -> None:
    torch.manual_seed(2)
    doc, tgt, pos, neg = (torch.randn(3, 5, dtype=torch.float64) for _ in range(4))
    val = claps_loss(doc, tgt, pos, neg, 0.1, scale_second_term=scale)
    n = F.normalize
    ref = 0.0
    for i in range(3):
        d = n(doc[i], dim=0)
        row1 = [float(d @ n(tgt[j], dim=0)) for j in range(3)] + [float(d @ n(neg[i], dim=0))]
        row2 = list(row1)
        row2[i] = float(d @ n(pos[i], dim=0))
        for row, div in ((row1, 0.1), (row2, 0.1 if scale else 1.0)):
            lg = [x / div for x in row]
            ref += 0.5 * (-lg[i] + math.log(sum(math.exp(x) for x in lg)))
    assert val.item() == pytest.approx(ref / 3, rel=1e-12)


def test_candidates_component_with_a_head() -> None:
    torch.manual_seed(3)
    head = torch.nn.Linear(8, 5)
    z = torch.randn(6, 2, 8, requires_grad=True)
    labels = torch.randint(5, (6,))
    gen = LatentAdversarialPairs(head=head)
    c = gen(z, labels)
    assert c.views.shape == (6, 3, 8) and c.extra.shape == (6, 8) and c.mask.shape == (18, 6)
    assert F.cross_entropy(head(c.extra), labels) > F.cross_entropy(head(z[:, 1]), labels)
    NTXent()(c.views_or(z), labels=labels, **c.objective_kwargs()).backward()
    assert torch.isfinite(z.grad).all()


def test_registry_and_bad_inputs() -> None:
    gen = registry.build("candidates", "claps")
    with pytest.raises(ValueError, match="head"):
        gen(torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match="eps_pos"):
        LatentAdversarialPairs(eps_pos=0)
    with pytest.raises(ValueError, match="K >= 2"):
        LatentAdversarialPairs(head=torch.nn.Linear(3, 2))(torch.randn(2, 1, 3))
    with pytest.raises(ValueError, match="batch sizes"):
        claps_loss(torch.randn(2, 3), torch.randn(3, 3), torch.randn(2, 3), torch.randn(2, 3))
