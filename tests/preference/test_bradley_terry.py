import math

import pytest
import torch

from pairlab.preference.bradley_terry import (
    bt_pair_loss,
    bt_probability,
    pair_consistency_hinge,
    soft_pair_consistency,
)


def test_bt_loss_closed_form_with_ties():
    r1 = torch.tensor([2.0, 0.0, 1.0, -1.0], dtype=torch.float64)
    r2 = torch.tensor([0.0, 1.0, 1.0, 3.0], dtype=torch.float64)
    pref = torch.tensor([1, 0, 2, 2])
    loss = bt_pair_loss(r1, r2, pref, reduction="none")
    p = [1 / (1 + math.exp(-(a - b))) for a, b in zip(r1.tolist(), r2.tolist(), strict=True)]
    ref = [-math.log(p[0]), -math.log(1 - p[1]), -0.5 * math.log(p[2]) - 0.5 * math.log(1 - p[2]),
           -0.5 * math.log(p[3]) - 0.5 * math.log(1 - p[3])]
    assert torch.allclose(loss, torch.tensor(ref, dtype=torch.float64), atol=1e-12)
    assert loss[2].item() == pytest.approx(math.log(2))  # equal rewards, tie: ln 2
    assert bt_probability(r1, r2)[0].item() == pytest.approx(p[0])
    assert bt_pair_loss(r1, r2, pref).item() == pytest.approx(sum(ref) / 4)


def test_bt_gradient_and_extreme_values_stable():
    r1 = torch.tensor([200.0, -200.0], requires_grad=True)
    r2 = torch.zeros(2)
    loss = bt_pair_loss(r1, r2, torch.tensor([0, 1]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(200.0)
    loss.backward()
    assert torch.allclose(r1.grad, torch.tensor([0.5, -0.5]))
    assert torch.autograd.gradcheck(
        lambda a, b: bt_pair_loss(a, b, torch.tensor([1, 0, 2]), tie_target=0.3),
        (torch.randn(3, dtype=torch.float64, requires_grad=True), torch.randn(3, dtype=torch.float64)),
    )


def test_consistency_hinge_hand_values():
    delta = torch.tensor([-0.3, 0.2, 0.4, -0.1, 0.25])
    pref = torch.tensor([1, 1, 0, 0, 2])
    out = pair_consistency_hinge(delta, pref, reduction="none")
    assert torch.allclose(out, torch.tensor([0.3, 0.0, 0.4, 0.0, 0.25]))  # pref=1 with Δ<0: positive hinge


def test_soft_consistency_hand_values():
    s1 = torch.tensor([[0.8, 0.2]])
    s2 = torch.tensor([[0.4, 0.6]])  # Δs = [0.4, -0.4]
    p1 = torch.tensor([[0.6, 0.4]])
    p2 = torch.tensor([[0.5, 0.5]])  # Δp = [0.1, -0.1]
    assert soft_pair_consistency(s1, s2, p1, p2).item() == pytest.approx(0.3 + 0.3)
    assert soft_pair_consistency(s1, s2, s1, s2).item() == pytest.approx(0.0)


def test_errors():
    r = torch.zeros(3)
    with pytest.raises(ValueError, match="pref values"):
        bt_pair_loss(r, r, torch.tensor([0, 1, 3]))
    with pytest.raises(TypeError, match="integer"):
        bt_pair_loss(r, r, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="pref must have shape"):
        bt_pair_loss(r, r, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="tie_target"):
        bt_pair_loss(r, r, torch.tensor([0, 1, 2]), tie_target=2.0)
    with pytest.raises(ValueError, match="reduction"):
        pair_consistency_hinge(r, torch.tensor([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="one shape"):
        soft_pair_consistency(torch.zeros(2, 2), torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2, 2))
