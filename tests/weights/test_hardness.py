"""HCL hardness weights: closed form vs loop (float64), mean 1 over negatives, beta=0 identity, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives import NTXent, SupCon
from pairlab.weights.hardness import HardnessWeights


def test_weights_match_loop_and_have_mean_one() -> None:
    torch.manual_seed(0)
    s = torch.randn(4, 7, dtype=torch.float64) * 3
    t = torch.rand(4, 7) > 0.7
    v = torch.rand(4, 7) > 0.1
    w = HardnessWeights(beta=0.8)(s, t, v)
    for i in range(4):
        negs = [j for j in range(7) if v[i, j] and not t[i, j]]
        mean = sum(math.exp(0.8 * float(s[i, j])) for j in negs) / max(len(negs), 1)
        for j in range(7):
            exp = math.exp(0.8 * float(s[i, j])) / mean if j in negs else 1.0
            assert float(w[i, j]) == pytest.approx(exp, rel=1e-12)
        if negs:
            assert float(w[i, negs].mean()) == pytest.approx(1.0, rel=1e-12)


def test_no_overflow_at_large_scores_and_beta_zero_is_plain() -> None:
    s = torch.tensor([[1000.0, 999.0, -5.0]])
    t = torch.tensor([[True, False, False]])
    w = HardnessWeights(beta=1.0)(s, t, torch.ones_like(t))
    assert torch.isfinite(w).all() and float(w[0, 1:].mean()) == pytest.approx(1.0)
    torch.manual_seed(0)
    z = torch.randn(6, 2, 4, dtype=torch.float64)
    assert torch.allclose(NTXent()(z, weights=HardnessWeights(beta=0.0)), NTXent()(z))


def test_gradcheck_through_supcon_with_hardness_weights() -> None:
    torch.manual_seed(1)
    z = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1])
    captured = []

    def capture(s, t, v):
        captured.append(HardnessWeights(1.5)(s, t, v))
        return captured[-1]

    SupCon(temperature=0.5)(z, labels, weights=capture)  # the weights are constants: fix them at z
    w = captured[0]
    assert torch.autograd.gradcheck(lambda x: SupCon(temperature=0.5)(x, labels, weights=w), (z,))


def test_hard_weighting_raises_loss_vs_uniform() -> None:
    torch.manual_seed(3)
    z = torch.randn(16, 2, 8)
    assert NTXent()(z, weights=HardnessWeights(beta=1.0)) > NTXent()(z)  # Jensen: E_q[e^s] >= E[e^s]


def test_registry_and_bad_inputs() -> None:
    assert isinstance(registry.build("weights", "hardness"), HardnessWeights)
    with pytest.raises(ValueError, match="beta"):
        HardnessWeights(beta=-1)
    with pytest.raises(ValueError, match="targets must have shape"):
        HardnessWeights()(torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="scores"):
        HardnessWeights()([[1.0]], None, None)
