"""DCL against a brute-force loop: positives are out of the partition."""

from __future__ import annotations

import pytest
import torch

from pairlab import DCL, NTXent


def brute_dcl(z, tau):
    zf = z.reshape(-1, z.shape[-1])
    zf = zf / zf.norm(dim=-1, keepdim=True)
    n, k = zf.shape[0], z.shape[1]
    total = 0.0
    for i in range(n):
        same = [j for j in range(n) if j // k == i // k and j != i]
        negs = [j for j in range(n) if j // k != i // k]
        log_z = torch.logsumexp(torch.stack([zf[i] @ zf[j] / tau for j in negs]), 0)
        total = total + sum(log_z - zf[i] @ zf[j] / tau for j in same) / len(same)
    return total / n


@pytest.mark.parametrize("k", [2, 3])
def test_dcl_brute_force_value_and_grad(k):
    z = torch.randn(5, k, 4, dtype=torch.float64, requires_grad=True)
    out = DCL(0.2, backend="dense")(z)
    (g,) = torch.autograd.grad(out, z)
    ref = brute_dcl(z, 0.2)
    (gr,) = torch.autograd.grad(ref, z)
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(g, gr, atol=1e-12)


def test_dcl_below_ntxent():
    """Removing the positive from the partition lowers every anchor's loss."""
    z = torch.randn(16, 2, 8)
    assert DCL(0.1)(z) < NTXent(0.1)(z)


def test_dcl_needs_a_negative():
    z = torch.randn(1, 2, 8)
    with pytest.raises(ValueError, match="no anchor"):
        DCL(0.1)(z)
