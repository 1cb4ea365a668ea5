import math

import pytest
import torch

from pairlab import registry
from pairlab.metrics.geometry import alignment, effective_rank, uniformity


def test_alignment_closed_form():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([[0.0, 3.0], [0.0, 1.0]])  # pair 0 orthogonal (||.||^2 = 2), pair 1 identical (0)
    assert alignment(x, y) == pytest.approx(1.0)
    assert alignment(x, y, alpha=1.0) == pytest.approx(math.sqrt(2) / 2)
    assert alignment(x, x) == pytest.approx(0.0)


def test_uniformity_closed_form():
    # antipodal pair: ||x-y||^2 = 4 -> log exp(-8) = -8
    assert uniformity(torch.tensor([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(-8.0)
    # square on the circle: 4 pairs at distance^2 2, 2 pairs at 4
    sq = torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]])
    assert uniformity(sq) == pytest.approx(math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6), rel=1e-6)
    # collapse: every pair at distance 0 -> 0 (the maximum)
    assert uniformity(torch.ones(5, 3)) == pytest.approx(0.0, abs=1e-6)


def test_uniformity_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    f = x / x.norm(dim=1, keepdim=True)
    vals = [math.exp(-2 * float((f[i] - f[j]).square().sum())) for i in range(30) for j in range(i + 1, 30)]
    assert uniformity(x) == pytest.approx(math.log(sum(vals) / len(vals)), rel=1e-9)


def test_effective_rank_known_spectra():
    assert effective_rank(torch.eye(5)) == pytest.approx(5.0)
    assert effective_rank(torch.diag(torch.tensor([3.0, 0, 0]))) == pytest.approx(1.0)
    s = torch.tensor([2.0, 1.0, 1.0])
    p = s / s.sum()
    assert effective_rank(torch.diag(s)) == pytest.approx(float(torch.exp(-(p * p.log()).sum())))
    # invariant to an orthogonal rotation of the features
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    assert effective_rank(torch.diag(s).double() @ q) == pytest.approx(effective_rank(torch.diag(s)))
    assert effective_rank(torch.zeros(3, 3)) == 0.0
    # centring removes a constant offset: rank-1 data + offset
    x = torch.outer(torch.arange(6.0), torch.tensor([1.0, 0.0])) + torch.tensor([0.0, 5.0])
    assert effective_rank(x, center=True) == pytest.approx(1.0)


def test_registered_and_validates():
    for name in ("alignment", "uniformity", "effective_rank"):
        assert name in registry.available("metrics")
    with pytest.raises(ValueError, match="y"):
        alignment(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(torch.randn(1, 2))
