import math

import pytest
import torch

from pairlab.preference.dpo import dpo_loss


def test_init_is_ln2_and_closed_form():
    x = torch.tensor([-5.0, -3.0])
    assert dpo_loss(x, x, x, x).item() == pytest.approx(math.log(2))
    lw, ll, rw, rl = (torch.tensor([v], dtype=torch.float64) for v in (-2.0, -6.0, -3.0, -4.0))
    h = 0.5 * ((-2 + 3) - (-6 + 4))
    assert dpo_loss(lw, ll, rw, rl, beta=0.5).item() == pytest.approx(math.log1p(math.exp(-h)), abs=1e-12)
    smooth = dpo_loss(lw, ll, rw, rl, beta=0.5, label_smoothing=0.1).item()
    assert smooth == pytest.approx(0.9 * math.log1p(math.exp(-h)) + 0.1 * math.log1p(math.exp(h)), abs=1e-12)


def test_gradient_raises_chosen_lowers_rejected():
    lw = torch.tensor([-4.0], requires_grad=True)
    ll = torch.tensor([-4.0], requires_grad=True)
    dpo_loss(lw, ll, torch.tensor([-4.0]), torch.tensor([-4.0])).backward()
    assert lw.grad.item() < 0 < ll.grad.item()


def test_errors():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="one shape"):
        dpo_loss(x, torch.zeros(3), x, x)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(x, x, x, x, label_smoothing=0.7)
