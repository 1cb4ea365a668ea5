"""Tiled masked logsumexp against a dense float64 reference: every schedule (sym, bi, rows), every key
mode, uneven tiles, the underflow fallback, empty rows and gradcheck."""

from __future__ import annotations

import pytest
import torch

from pairlab.kernels import lse as lse_mod
from pairlab.kernels.lse import Spec, tiled_lse


def reference(x, y, t, kx, ky, mode, self_offset):
    """dense masked logsumexp of t x y^T in float64 (rows), -inf on empty rows."""
    s = (x.double() @ y.double().T) * t.double()
    n, m = s.shape
    keep = torch.ones(n, m, dtype=torch.bool)
    if self_offset is not None:
        for i in range(n):
            if 0 <= self_offset + i < m:
                keep[i, self_offset + i] = False
    eq = kx[:, None] == ky[None, :]
    if mode == "eq":
        keep &= eq
    elif mode == "neq":
        keep &= ~eq
    return torch.logsumexp(s.masked_fill(~keep, float("-inf")), dim=1), keep


def _data(n, m, d=6, dtype=torch.float64, seed=0, classes=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(m, d, generator=g, dtype=dtype)
    x = x / x.norm(dim=1, keepdim=True)
    y = y / y.norm(dim=1, keepdim=True)
    kx = torch.randint(0, classes, (n,), generator=g)
    ky = torch.randint(0, classes, (m,), generator=g)
    return x, y, kx, ky


def _grads(out, inputs, w):
    return torch.autograd.grad((out * w).sum(), inputs)


@pytest.mark.parametrize("mode", ["all", "eq", "neq"])
@pytest.mark.parametrize("kind", ["sym", "bi", "rows"])
def test_matches_dense_reference_value_and_grad(kind, mode):
    n = 37
    m = 45 if kind == "rows" else 37
    x, y, kx, ky = _data(n, m)
    if kind == "sym":
        y, ky = x, kx
    off = {"sym": 0, "bi": None, "rows": 3}[kind]
    x.requires_grad_(True)
    if kind != "sym":
        y.requires_grad_(True)
    t = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    ref_r, keep = reference(x, y, t, kx, ky, mode, off)
    ne_r = keep.any(1)
    ne_c = keep.any(0)
    out = tiled_lse(x, y, t, kx, ky, Spec(kind, mode, off, 8), ne_r, ne_c)
    g = torch.Generator().manual_seed(1)
    if kind == "bi":
        ref_c, _ = reference(y, x, t, ky, kx, mode, None)
        ref = torch.cat([ref_r, ref_c])
    else:
        ref = ref_r
    assert out.shape == ref.shape
    fin = torch.isfinite(ref)
    assert torch.equal(fin, torch.isfinite(out))
    torch.testing.assert_close(out[fin], ref[fin], rtol=1e-12, atol=1e-12)
    w = torch.rand(ref.shape, generator=g, dtype=torch.float64) * fin
    inputs = (x, t) if kind == "sym" else (x, y, t)
    got = _grads(torch.where(fin, out, 0.0), inputs, w)
    exp = _grads(torch.where(fin, ref, 0.0), inputs, w)
    for a, b in zip(got, exp, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_empty_rows_give_minus_inf_and_no_nan_gradient():
    x, _, _, _ = _data(10, 10)
    kx = torch.arange(10)  # all keys distinct: no row has an "eq" partner besides itself (excluded)
    kx[1] = 0  # rows 0 and 1 share a key
    x.requires_grad_(True)
    t = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    out = tiled_lse(x, x, t, kx, kx, Spec("sym", "eq", 0, 4), kx.bincount()[kx] > 1)
    assert torch.isinf(out[2:]).all() and (out[2:] < 0).all()
    torch.testing.assert_close(out[0], t.double() * (x[0] @ x[1]), rtol=1e-12, atol=1e-12)
    gx, gt = torch.autograd.grad(out[:2].sum(), (x, t))
    assert torch.isfinite(gx).all() and torch.isfinite(gt)
    assert gx[2:].abs().max() == 0


@pytest.mark.parametrize("kind", ["sym", "bi"])
def test_underflow_falls_back_to_online_maximum(kind, monkeypatch):
    """tau = 1/300 in float32 with nearly orthogonal rows: exp(S - c) underflows, the rows schedule takes over."""
    calls = []
    orig = lse_mod._fwd_rows
    monkeypatch.setattr(lse_mod, "_fwd_rows", lambda *a: calls.append(1) or orig(*a))
    n, d = 40, 64
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, d, generator=g)
    x = x / x.norm(dim=1, keepdim=True)
    y = x if kind == "sym" else torch.linalg.qr(torch.randn(d, d, generator=g))[0][:n // 2].repeat(2, 1)
    x.requires_grad_(True)
    t = torch.tensor(300.0)
    k = torch.zeros(n, dtype=torch.long)
    off = 0 if kind == "sym" else None
    ne = torch.ones(n, dtype=torch.bool)
    out = tiled_lse(x, y, t, k, k, Spec(kind, "all", off, 16), ne, ne)
    ref, _ = reference(x.detach(), y.detach(), t, k, k, "all", off)
    if kind == "bi":
        ref = torch.cat([ref, reference(y.detach(), x.detach(), t, k, k, "all", None)[0]])
    assert torch.isfinite(out).all()
    assert len(calls) == (1 if kind == "sym" else 2)
    # fp32 scores of magnitude ~100 carry an absolute error of about t * eps
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=float(t) * 1e-6)
    (gx,) = torch.autograd.grad(out.sum(), x)
    xr = x.detach().double().requires_grad_(True)
    yr = xr if kind == "sym" else y.double()
    r2, _ = reference(xr, yr, t, k, k, "all", off)
    if kind == "bi":
        r2 = torch.cat([r2, reference(yr, xr, t, k, k, "all", None)[0]])
    (gr,) = torch.autograd.grad(r2.sum(), xr)
    assert (gx.double() - gr).abs().max() <= 3e-6 * gr.abs().max()


@pytest.mark.parametrize("kind", ["sym", "bi", "rows"])
def test_gradcheck(kind):
    x, y, kx, ky = _data(7, 7 if kind != "rows" else 9, d=3)
    x.requires_grad_(True)
    t = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    ne = torch.ones(9, dtype=torch.bool)
    if kind == "sym":
        def fn(x, t):
            return tiled_lse(x, x, t, kx, kx, Spec("sym", "neq", 0, 3), ne[:7])
        inputs = (x, t)
    else:
        y.requires_grad_(True)

        def fn(x, y, t):
            off = None if kind == "bi" else 1
            return tiled_lse(x, y, t, kx, ky, Spec(kind, "all", off, 3), ne[: x.shape[0]], ne[: y.shape[0]])
        inputs = (x, y, t)
    assert torch.autograd.gradcheck(fn, inputs)


def test_bad_spec_is_rejected():
    x, y, kx, ky = _data(4, 4)
    ne = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="y is x"):
        tiled_lse(x, y, torch.tensor(1.0), kx, ky, Spec("sym", "all", 0, 2), ne)
    with pytest.raises(ValueError, match="spec"):
        tiled_lse(x, y, torch.tensor(1.0), kx, ky, Spec("cols", "all", 0, 2), ne)


def test_constant_shift_is_used_at_ordinary_temperatures(monkeypatch):
    """tau = 0.05 in float32: the symmetric schedule never needs the online fallback."""
    monkeypatch.setattr(lse_mod, "_fwd_rows", lambda *a: pytest.fail("fell back to the rows schedule"))
    x, _, k, _ = _data(50, 50, d=16, dtype=torch.float32)
    x.requires_grad_(True)
    out = tiled_lse(x, x, torch.tensor(20.0), k, k, Spec("sym", "all", 0, 16), torch.ones(50, dtype=torch.bool))
    ref, _ = reference(x.detach(), x.detach(), torch.tensor(20.0), k, k, "all", 0)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=20.0 * 1e-6)
