"""Noising schedules: closed forms at known timesteps."""

from __future__ import annotations

import pytest
import torch

from pairlab.generative import FlowMatching, VariancePreserving


def test_schedules_closed_form():
    x0, eps = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    x_t, v = FlowMatching()(x0, eps, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(x_t[0], x0[0])
    torch.testing.assert_close(x_t[1], 0.5 * (x0[1] + eps[1]))
    torch.testing.assert_close(x_t[2], eps[2])
    torch.testing.assert_close(v, eps - x0)
    vp = VariancePreserving()
    ab = vp.alpha_bar(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ab[0].item() == pytest.approx(1.0) and ab[1].item() == pytest.approx(1e-5)
    x_t, target = vp(x0, eps, 0.3)
    a = vp.alpha_bar(torch.tensor(0.3, dtype=torch.float64))
    torch.testing.assert_close(x_t, a.sqrt() * x0 + (1 - a).sqrt() * eps)
    assert torch.equal(target, eps)
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        FlowMatching()(x0, eps, torch.rand(2))


@pytest.mark.parametrize("cls", [FlowMatching, VariancePreserving])
def test_prediction_targets_closed_form(cls):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    x_t, tx0 = cls(target="x0")(x0, eps, t)
    torch.testing.assert_close(tx0, x0)
    x_t2, teps = cls(target="eps")(x0, eps, t)
    torch.testing.assert_close(teps, eps)
    x_t3, tv = cls(target="v")(x0, eps, t)
    assert torch.equal(x_t, x_t2) and torch.equal(x_t, x_t3)  # the target does not change the noising
    if cls is FlowMatching:
        torch.testing.assert_close(tv, eps - x0)
        # an x0 error d is a velocity error d / t (x0 = x_t - t v)
        torch.testing.assert_close(x_t - t[:, None] * tv, x0)
    else:
        a = VariancePreserving().alpha_bar(t)[:, None]
        torch.testing.assert_close(tv, a.sqrt() * eps - (1 - a).sqrt() * x0)
        torch.testing.assert_close(a.sqrt() * x_t - (1 - a).sqrt() * tv, x0)  # Salimans & Ho's identity
    assert FlowMatching().target == "v" and VariancePreserving().target == "eps"  # the faithful defaults
    with pytest.raises(ValueError, match=r"target must be one of \['eps', 'x0', 'v'\]"):
        cls(target="score")
