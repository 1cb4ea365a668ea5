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
