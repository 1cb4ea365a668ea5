"""Shuffled group whitening: closed-form ZCA reference in float64, covariance = I, shuffle diversity, uniformity."""

import pytest
import torch

from pairlab.models.whitening import ShuffledGroupWhitening


def _anisotropic(b=128, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, dtype=torch.float64, generator=g) @ torch.diag(torch.logspace(-2, 1, d, dtype=torch.float64))
    return torch.randn(b, d, dtype=torch.float64, generator=g) @ a.T + 3.0


def _reference(h, perm, g, eps):
    """Spec §7(b) with an explicit per-group loop and eigendecomposition."""
    b, d = h.shape
    x = h[:, perm]
    out = torch.empty_like(x)
    size = d // g
    for k in range(g):
        xg = x[:, k * size:(k + 1) * size]
        xg = xg - xg.mean(0)
        lam, u = torch.linalg.eigh(xg.T @ xg / b)
        out[:, k * size:(k + 1) * size] = xg @ u @ torch.diag((lam + eps) ** -0.5) @ u.T
    return out[:, torch.argsort(perm)]


@pytest.mark.parametrize("detach", [True, False])
def test_matches_reference_value_and_grad(detach):
    h = _anisotropic(b=32, d=16).requires_grad_()
    sgw = ShuffledGroupWhitening(num_groups=4, eps=1e-5, detach_whitening_matrix=detach)
    got = sgw(h, generator=torch.Generator().manual_seed(3))
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    want = _reference(h if not detach else h, perm, 4, 1e-5)
    torch.testing.assert_close(got, want)
    w = torch.randn_like(got)
    (g1,) = torch.autograd.grad((got * w).sum(), h)
    if detach:  # W from a detached covariance: only the centred input carries gradient
        x = h[:, perm].detach()
        ref_out = torch.empty(32, 16, dtype=torch.float64)
        hh = h[:, perm]
        for k in range(4):
            xg = x[:, 4 * k:4 * k + 4] - x[:, 4 * k:4 * k + 4].mean(0)
            lam, u = torch.linalg.eigh(xg.T @ xg / 32)
            wm = u @ torch.diag((lam + 1e-5) ** -0.5) @ u.T
            hg = hh[:, 4 * k:4 * k + 4]
            ref_out = ref_out.index_put((torch.arange(32)[:, None], torch.arange(4 * k, 4 * k + 4)[None]),
                                        (hg - hg.mean(0)) @ wm)
        want = ref_out[:, torch.argsort(perm)]
    (g2,) = torch.autograd.grad((want * w).sum(), h)
    torch.testing.assert_close(g1, g2)


def test_groups_are_white_and_shuffles_differ():
    """Spec §7(d)1-2: each group's covariance ~ I; two passes (different pi) differ for the same input."""
    h = _anisotropic()
    sgw = ShuffledGroupWhitening(num_groups=8, eps=0.0)
    y = sgw(h, generator=torch.Generator().manual_seed(0))
    y2 = sgw(h, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    yg = y[:, perm].view(128, 8, 8)
    for k in range(8):
        cov = (yg[:, k] - yg[:, k].mean(0)).T @ (yg[:, k] - yg[:, k].mean(0)) / 128
        assert (cov - torch.eye(8, dtype=torch.float64)).abs().max() < 1e-3
    assert (y - y2).abs().mean() > 0.1


def test_uniformity_improves():
    """Spec §7(d)3: uniformity (t=2) of normalised SGW outputs is lower than of the raw features."""
    h = _anisotropic()

    def uniformity(x):
        x = torch.nn.functional.normalize(x, dim=1)
        return torch.log(torch.exp(-2 * torch.pdist(x) ** 2).mean())

    y = ShuffledGroupWhitening(num_groups=8)(h)
    assert float(uniformity(y)) < float(uniformity(h)) - 0.2  # measured: -3.57 vs -3.22


def test_eval_is_identity_and_group_one_does_not_shuffle():
    h = _anisotropic(b=64, d=8)
    sgw = ShuffledGroupWhitening(num_groups=1)
    a, b = sgw(h), sgw(h)
    torch.testing.assert_close(a, b)  # G = 1: no shuffle, deterministic full ZCA
    sgw.eval()
    assert sgw(h) is h


def test_default_groups_and_bad_input():
    sgw = ShuffledGroupWhitening()  # G = ceil(2D/B) = ceil(2*16/32) = 1
    assert sgw(_anisotropic(b=32, d=16)).shape == (32, 16)
    with pytest.raises(ValueError, match="divide"):
        ShuffledGroupWhitening(num_groups=3)(_anisotropic(b=32, d=16))
    with pytest.raises(ValueError, match="below the batch size"):
        ShuffledGroupWhitening(num_groups=1)(_anisotropic(b=8, d=16))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        ShuffledGroupWhitening(num_groups=2)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="NaN"):
        ShuffledGroupWhitening(num_groups=2)(torch.full((8, 4), float("nan")))
    with pytest.raises(ValueError, match="num_groups"):
        ShuffledGroupWhitening(num_groups=0)
