import math

import pytest
import torch

from pairlab.preference.d2o import d2o_loss


def test_init_is_ln2_and_closed_form():
    la = torch.randn(3, 11)
    ln = torch.randn(3)
    assert d2o_loss(la, la.clone(), ln, ln.clone()).item() == pytest.approx(math.log(2), abs=1e-6)
    la = torch.tensor([[-2.0, -4.0]], dtype=torch.float64)
    ra = torch.tensor([[-3.0, -3.0]], dtype=torch.float64)
    ln = torch.tensor([-5.0], dtype=torch.float64)
    rn = torch.tensor([-4.0], dtype=torch.float64)
    u = 0.2 * ((1.0 + -1.0) / 2)
    v = 0.3 * (-1.0)
    assert d2o_loss(la, ra, ln, rn, alpha=0.3, beta=0.2).item() == pytest.approx(math.log1p(math.exp(-(u - v))))
    # third-party double normalisation: beta / K on the K-mean
    la2 = torch.tensor([[-1.0, -1.0]], dtype=torch.float64)
    u3 = (0.2 / 2) * 2.0
    assert d2o_loss(la2, ra, ln, rn, 0.3, 0.2, official_3p=True).item() == pytest.approx(
        math.log1p(math.exp(-(u3 - v)))
    )


def test_toy_policy_lowers_harmful_mass_without_collapse():
    """A policy = learnable logits over 20 responses (5 harmful); anchors sampled from the reference."""
    torch.manual_seed(0)
    ref_logits = torch.randn(20)
    harmful = torch.arange(5)
    theta = ref_logits.clone().requires_grad_(True)
    ref_lp = torch.log_softmax(ref_logits, 0)
    anchors = torch.multinomial(torch.softmax(ref_logits, 0).index_fill(0, harmful, 0.0), 11, replacement=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(200):
        lp = torch.log_softmax(theta, 0)
        neg = harmful[torch.randint(0, 5, (8,))]
        loss = d2o_loss(lp[anchors].expand(8, 11), ref_lp[anchors].expand(8, 11), lp[neg], ref_lp[neg],
                        alpha=1.0, beta=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    p, p0 = torch.softmax(theta.detach(), 0), torch.softmax(ref_logits, 0)
    assert p[harmful].sum() < 0.5 * p0[harmful].sum()
    safe = torch.arange(5, 20)
    h = lambda q: float(-(q / q.sum() * torch.log(q / q.sum())).sum())  # noqa: E731
    assert h(p[safe]) > 0.5 * h(p0[safe])  # no collapse onto one response


def test_errors():
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        d2o_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        d2o_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="alpha"):
        d2o_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2), torch.zeros(2), alpha=0.0)
