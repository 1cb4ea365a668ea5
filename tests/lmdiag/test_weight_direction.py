import pytest
import torch
import torch.nn.functional as F

from pairlab.lmdiag.weight_direction import (
    bce_score_weights,
    compare_weights,
    infonce_score_weights,
    score_weights,
    weight_direction_mix,
)


def test_autograd_weights_match_infonce_closed_form():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 6, generator=g, dtype=torch.float64)
    tau = 0.5

    def infonce(x):
        return F.cross_entropy(x / tau, torch.zeros(4, dtype=torch.long), reduction="sum")

    w = score_weights(infonce, s)
    closed = infonce_score_weights(s, 0, tau)
    assert torch.allclose(w, closed, atol=1e-12)
    pi = torch.softmax(s / tau, -1)
    assert torch.allclose(closed[:, 0], -(1 - pi[:, 0]) / tau)
    # negatives share the positive's weight
    assert torch.allclose(closed[:, 1:].sum(1), -closed[:, 0])


def test_autograd_weights_match_bce_closed_form():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(10, generator=g, dtype=torch.float64)
    y = (torch.rand(10, generator=g) > 0.5).double()
    w = score_weights(lambda x: F.binary_cross_entropy_with_logits(x, y, reduction="sum"), z)
    assert torch.allclose(w, bce_score_weights(z, y), atol=1e-12)


def test_mixed_surrogate_gradient_is_weight_times_direction():
    """Finite differences on a tiny linear scorer: grad of the surrogate = Σ w_i^A ∇ s_i^B."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    theta = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    s_a = (x @ theta).detach()
    w = infonce_score_weights(s_a[None], 0, 1.0)[0]  # weights of objective A (frozen)

    def s_b(t):  # objective B differentiates a different score: tanh of the linear score
        return torch.tanh(x @ t)

    loss = weight_direction_mix(w, s_b(theta))
    (grad,) = torch.autograd.grad(loss, theta)
    eps = 1e-6
    fd = torch.zeros(3, dtype=torch.float64)
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = eps
        with torch.no_grad():
            fd[k] = ((w * s_b(theta + e)).sum() - (w * s_b(theta - e)).sum()) / (2 * eps)
    assert torch.allclose(grad, fd, atol=1e-6)
    # stopgrad: weights that depend on theta do not get differentiated
    w_live = torch.softmax(x @ theta, 0)
    (g2,) = torch.autograd.grad(weight_direction_mix(w_live, s_b(theta)), theta)
    (g3,) = torch.autograd.grad(weight_direction_mix(w_live.detach(), s_b(theta)), theta)
    assert torch.allclose(g2, g3)


def test_softmax_dilution_one_hard_negative():
    """Spec §14(d)(3): with K large and one hard negative, CL's weight on it is <= the BCE weight."""
    s = torch.full((1, 101), -2.0, dtype=torch.float64)
    s[0, 0] = 1.0  # positive
    s[0, 1] = 0.8  # hard negative
    labels = torch.zeros_like(s)
    labels[0, 0] = 1
    cmp = compare_weights(s, labels, tau=1.0)
    assert cmp["contrastive"][0, 1] <= cmp["classification"][0, 1]
    assert cmp["ratio"][0, 1] < 1


def test_errors():
    with pytest.raises(ValueError, match="scalar"):
        score_weights(lambda x: x * 2, torch.randn(3))
    with pytest.raises(ValueError, match="shape of scores"):
        weight_direction_mix(torch.randn(3), torch.randn(4))
    with pytest.raises(ValueError, match="column 0"):
        compare_weights(torch.randn(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="tau"):
        infonce_score_weights(torch.randn(2, 3), 0, tau=0.0)
