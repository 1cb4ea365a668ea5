"""Every benchmarked implementation computes the loss of its form: compared at tiny N with float64
references (SimCLR: 2N-anchor NT-Xent; CLIP: mean of both cross-entropy directions). Peers that need
the torchvision stub are checked in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from pairlab.bench.impls import IMPLS, inputs, make, naive_simclr


def ref_simclr(x0, x1, tau):
    """loop over the 2N anchors."""
    z = F.normalize(torch.cat([x0, x1]).double(), dim=1)
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        s = torch.stack([z[i] @ z[j] / tau for j in range(n2) if j != i])
        total = total + torch.logsumexp(s, 0) - z[i] @ z[pos] / tau
    return total / n2


def ref_clip(x0, x1, tau):
    a, b = F.normalize(x0.double(), dim=1), F.normalize(x1.double(), dim=1)
    s = a @ b.T / tau
    target = torch.arange(a.shape[0])
    return (F.cross_entropy(s, target) + F.cross_entropy(s.T, target)) / 2


@pytest.mark.parametrize("impl", ["pairlab", "pairlab-dense", "torch-ce", "pml-supcon", "pml-ntxent"])
def test_simclr_impls_match_reference(impl):
    x0, x1 = inputs(10, 6, dtype=torch.float64)
    got = make(impl, "simclr", tau=0.2)(x0, x1)
    torch.testing.assert_close(got.double(), ref_simclr(x0.detach(), x1.detach(), 0.2), rtol=1e-9, atol=0)


@pytest.mark.parametrize("impl", ["pairlab", "pairlab-dense", "info_nce"])
def test_clip_impls_match_reference(impl):
    x0, x1 = inputs(10, 6, dtype=torch.float64)
    got = make(impl, "clip", tau=0.2)(x0, x1)
    torch.testing.assert_close(got.double(), ref_clip(x0.detach(), x1.detach(), 0.2), rtol=1e-9, atol=0)


@pytest.mark.slow  # importing lightly and open_clip takes 5-20 s on a shared 2-core machine
def test_stubbed_peers_match_reference_in_subprocess():
    script = """
import torch
from pairlab.bench.impls import make, inputs
x0, x1 = inputs(10, 6, dtype=torch.float64)
print(float(make("lightly", "simclr", 0.2)(x0, x1)), float(make("open_clip", "clip", 0.2)(x0, x1)))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lightly_val, clip_val = map(float, proc.stdout.split())
    x0, x1 = inputs(10, 6, dtype=torch.float64)
    assert lightly_val == pytest.approx(float(ref_simclr(x0.detach(), x1.detach(), 0.2)), rel=1e-9)
    assert clip_val == pytest.approx(float(ref_clip(x0.detach(), x1.detach(), 0.2)), rel=1e-9)


def test_naive_simclr_gradient_matches_reference():
    x0, x1 = inputs(7, 5, dtype=torch.float64)
    (g,) = torch.autograd.grad(naive_simclr(x0, x1, 0.3), x0)
    xr = x0.detach().clone().requires_grad_(True)
    (gr,) = torch.autograd.grad(ref_simclr(xr, x1.detach(), 0.3), xr)
    torch.testing.assert_close(g, gr, rtol=1e-9, atol=1e-12)


def test_unknown_names_are_rejected():
    assert set(IMPLS) == {"simclr", "clip"}
    with pytest.raises(ValueError, match="form"):
        make("pairlab", "triplet")
    with pytest.raises(ValueError, match="open_clip"):
        make("lightly", "clip")
