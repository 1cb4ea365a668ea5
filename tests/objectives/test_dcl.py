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


def test_dcl_weights_enter_the_partition_but_never_on_positives():
    """W multiplies exp(s) of the negatives; whatever W holds on positives, they stay out (decoupled)."""
    torch.manual_seed(0)
    b, k, tau = 4, 2, 0.3
    z = torch.randn(b, k, 5, dtype=torch.float64, requires_grad=True)
    n = b * k
    w = torch.rand(n, n, dtype=torch.float64) + 0.5
    out = DCL(tau, backend="dense")(z, weights=w)
    zf = z.reshape(n, -1)
    zf = zf / zf.norm(dim=-1, keepdim=True)
    ref = 0.0
    for i in range(n):
        pos = [j for j in range(n) if j // k == i // k and j != i]
        negs = [j for j in range(n) if j // k != i // k]
        log_z = torch.logsumexp(torch.stack([torch.log(w[i, j]) + zf[i] @ zf[j] / tau for j in negs]), 0)
        ref = ref + sum(log_z - zf[i] @ zf[j] / tau for j in pos) / len(pos)
    ref = ref / n
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    (g,) = torch.autograd.grad(out, z)
    (gr,) = torch.autograd.grad(ref, z)
    assert torch.allclose(g, gr, atol=1e-12)
    # a weights component's callable works too, and equals the dense W it returns
    fn = lambda scores, targets, valid: w  # noqa: E731
    assert DCL(tau, backend="dense")(z, weights=fn).item() == pytest.approx(out.item(), rel=1e-12)
