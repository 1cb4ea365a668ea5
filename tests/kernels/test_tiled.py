"""Tiled views/CLIP losses == the dense path (value, gradient, stats), through the public objectives and
directly; uneven tiles, K=3, labels (L_out, L_in), decoupled, extra columns, anchors without positive,
learnable scale, half-precision inputs, float32 against a float64 reference; the auto threshold."""

from __future__ import annotations

import pytest
import torch

import pairlab.kernels.tiled as tiled
from pairlab import CLIPLoss, NTXent, SupCon
from pairlab.kernels import AUTO_MIN_PAIRS, applies, clip_nce, views_nce
from pairlab.nce import nce
from pairlab.objectives.dcl import DCL


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """tile 8 so that every test runs several uneven tiles (37 rows = 4 x 8 + 5)."""
    monkeypatch.setattr(tiled, "DEFAULT_BLOCK", 8)


def _z(b=37, k=2, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, d, generator=g, dtype=dtype).requires_grad_(True)


def _run(make, args, backend):
    obj = make(backend)
    loss = obj(*args)
    params = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad] + list(obj.parameters())
    return loss, torch.autograd.grad(loss, params), obj.last_stats


def _assert_parity(make, args, rtol=1e-10):
    ld, gd, sd = _run(make, args, "dense")
    lt, gt, st = _run(make, args, "tiled")
    torch.testing.assert_close(lt, ld, rtol=rtol, atol=0)
    assert len(gd) == len(gt)
    for a, b in zip(gt, gd, strict=True):
        assert (a - b).abs().max() <= rtol * b.abs().max() + 1e-15
    assert sd.keys() == st.keys()
    for key in sd:
        assert st[key] == pytest.approx(sd[key], rel=1e-9, abs=1e-12), key


LABELS = torch.randint(0, 5, (37,), generator=torch.Generator().manual_seed(4))
LONELY = torch.cat([torch.arange(100, 110), LABELS[10:]])  # 10 anchors with a unique label


CASES = {
    "ntxent": (lambda b: NTXent(temperature=0.1, backend=b), lambda z: (z,)),
    "ntxent_k3": (lambda b: NTXent(temperature=0.2, backend=b), lambda z: (_z(k=3, seed=1),)),
    "supcon_out": (lambda b: SupCon(backend=b), lambda z: (z, LABELS)),
    "supcon_in": (lambda b: SupCon(aggregation="log_mean", backend=b), lambda z: (z, LABELS)),
    "supcon_lonely": (lambda b: SupCon(backend=b), lambda z: (_z(k=1, seed=2), LONELY)),
    "supcon_in_lonely": (lambda b: SupCon(aggregation="log_mean", backend=b), lambda z: (_z(k=1, seed=2), LONELY)),
    "dcl": (lambda b: DCL(backend=b), lambda z: (z,)),
    "dcl_labels": (lambda b: DCL(backend=b), lambda z: (z, LABELS)),
    "ntxent_learnable": (lambda b: NTXent(learnable_temperature=True, backend=b), lambda z: (z,)),
    "ntxent_dot": (lambda b: NTXent(similarity="dot", temperature=5.0, backend=b), lambda z: (z,)),
    "clip": (lambda b: CLIPLoss(backend=b), lambda z: (z[:, 0], z[:, 1])),
    "clip_learnable": (lambda b: CLIPLoss(learnable_temperature=True, backend=b), lambda z: (z[:, 0], z[:, 1])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_objectives_tiled_equal_dense_float64(case):
    make, args = CASES[case]
    _assert_parity(make, args(_z()))


def test_extra_columns_and_extra_labels():
    g = torch.Generator().manual_seed(5)
    extra = torch.randn(19, 16, generator=g, dtype=torch.float64, requires_grad=True)
    extra_labels = torch.randint(0, 5, (19,), generator=g)
    z = _z()
    for kw in ({"extra": extra}, {"extra": extra, "extra_labels": extra_labels}):
        make = SupCon if "extra_labels" in kw else NTXent
        args = (z, LABELS) if make is SupCon else (z,)
        out = {}
        for backend in ("dense", "tiled"):
            loss = make(backend=backend)(*args, **kw)
            out[backend] = (loss, torch.autograd.grad(loss, (z, extra)))
        torch.testing.assert_close(out["tiled"][0], out["dense"][0], rtol=1e-10, atol=0)
        for a, b in zip(out["tiled"][1], out["dense"][1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _fp32_vs_fp64(make, n=37):
    z64 = _z(b=n, d=32, seed=7)
    z32 = z64.detach().float().requires_grad_(True)
    ref = make("dense")(z64)
    (gref,) = torch.autograd.grad(ref, z64)
    got = make("tiled")(z32)
    (g,) = torch.autograd.grad(got, z32)
    assert abs(float(got.detach()) - float(ref.detach())) <= 2.5e-7 * abs(float(ref.detach()))
    assert float((g.double() - gref).abs().max()) <= 3e-6 * float(gref.abs().max())


@pytest.mark.parametrize("tau", [0.1, 0.02])
def test_float32_within_tolerance_of_float64(tau):
    _fp32_vs_fp64(lambda b: NTXent(temperature=tau, backend=b))
    _fp32_vs_fp64(lambda b: lambda z: SupCon(temperature=tau, backend=b)(z, LABELS))
    # CLIP in float32
    z64 = _z(d=32, seed=8)
    ref = CLIPLoss(temperature=tau, backend="dense")(z64[:, 0], z64[:, 1])
    (gref,) = torch.autograd.grad(ref, z64)
    z32 = z64.detach().float().requires_grad_(True)
    got = CLIPLoss(temperature=tau, backend="tiled")(z32[:, 0], z32[:, 1])
    (g,) = torch.autograd.grad(got, z32)
    assert abs(float(got.detach()) - float(ref.detach())) <= 2.5e-7 * abs(float(ref.detach()))
    assert float((g.double() - gref).abs().max()) <= 3e-6 * float(gref.abs().max())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    zh = _z(d=32, seed=9).detach().to(dtype).requires_grad_(True)
    losses, grads = [], []
    for backend in ("dense", "tiled"):
        loss = NTXent(backend=backend)(zh)
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, zh)[0])
    assert losses[1].dtype == torch.float32
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=0)
    assert grads[1].dtype == dtype
    torch.testing.assert_close(grads[1].float(), grads[0].float(), rtol=1e-2, atol=1e-3)


def _dense_views(x, y, kx, ky, off, t, aggregation="mean_log", decoupled=False):
    n, m = x.shape[0], y.shape[0]
    valid = torch.ones(n, m, dtype=torch.bool)
    for i in range(n):
        if 0 <= off + i < m:
            valid[i, off + i] = False
    targets = (kx[:, None] == ky[None, :]) & valid
    return nce((x @ y.T) * t, targets, valid, aggregation=aggregation, decoupled=decoupled)


@pytest.mark.parametrize("aggregation", ["mean_log", "log_mean"])
@pytest.mark.parametrize("decoupled", [False, True])
def test_views_nce_direct_gathered_candidates(aggregation, decoupled):
    """rank 1 of 3: 20 local anchors are rows 20..39 of 60 gathered candidates, plus 7 unmatched extras."""
    g = torch.Generator().manual_seed(11)
    allz = torch.nn.functional.normalize(torch.randn(60, 8, generator=g, dtype=torch.float64), dim=1)
    extra = torch.nn.functional.normalize(torch.randn(7, 8, generator=g, dtype=torch.float64), dim=1)
    keys = torch.arange(30).repeat_interleave(2)
    ekeys = -(2**62) - torch.arange(7)
    y = torch.cat([allz, extra]).requires_grad_(True)
    x = allz[20:40].clone().requires_grad_(True)
    t = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    ky = torch.cat([keys, ekeys])
    res = views_nce(x, y, keys[20:40], ky, 20, t, aggregation=aggregation, decoupled=decoupled, block=6)
    ref = _dense_views(x, y, keys[20:40], ky, 20, t, aggregation, decoupled)
    torch.testing.assert_close(res.loss, ref.loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(res.per_anchor, ref.per_anchor, rtol=1e-12, atol=1e-14)
    assert torch.equal(res.used, ref.used)
    for a, b in zip(torch.autograd.grad(res.loss, (x, y, t)), torch.autograd.grad(ref.loss, (x, y, t)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    for key in ref.stats:
        assert res.stats[key] == pytest.approx(ref.stats[key], rel=1e-9, abs=1e-12), key


def test_clip_nce_direct_gathered():
    g = torch.Generator().manual_seed(12)
    a_all = torch.nn.functional.normalize(torch.randn(30, 8, generator=g, dtype=torch.float64), dim=1)
    b_all = torch.nn.functional.normalize(torch.randn(30, 8, generator=g, dtype=torch.float64), dim=1)
    a_all.requires_grad_(True)
    b_all.requires_grad_(True)
    t = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    a, b = a_all[10:20], b_all[10:20]
    res = clip_nce(a, b, a_all, b_all, 10, t, block=4)
    eye = torch.zeros(10, 30, dtype=torch.bool)
    eye[torch.arange(10), torch.arange(10) + 10] = True
    r1 = nce((a @ b_all.T) * t, eye)
    r2 = nce((b @ a_all.T) * t, eye)
    ref = (r1.loss + r2.loss) / 2
    torch.testing.assert_close(res.loss, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(res.per_anchor, (r1.per_anchor + r2.per_anchor) / 2, rtol=1e-12, atol=0)
    for x, y in zip(torch.autograd.grad(res.loss, (a_all, b_all, t)), torch.autograd.grad(ref, (a_all, b_all, t)),
                    strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-13)
    for key in r1.stats:
        assert res.stats[key] == pytest.approx(r1.stats[key], rel=1e-9), key
    with pytest.raises(ValueError, match="offset"):
        clip_nce(a, b, a_all, b_all, 25, t)


def test_no_positive_raises_or_returns_connected_zero():
    z = _z(b=6, k=1)
    labels = torch.arange(6)
    with pytest.raises(ValueError, match="no anchor"):
        SupCon(backend="tiled")(z, labels)
    obj = SupCon(backend="tiled", on_no_positive="zero")
    loss = obj(z, labels)
    assert float(loss) == 0.0
    (g,) = torch.autograd.grad(loss, z)
    assert float(g.abs().max()) == 0.0
    assert obj.last_stats["anchors_without_positive"] == 6.0


def test_applies_dispatch():
    assert applies("tiled", 2, 2) and not applies("dense", 10**6, 10**6)
    assert applies("auto", AUTO_MIN_PAIRS, 1) and not applies("auto", AUTO_MIN_PAIRS - 1, 1)
    with pytest.raises(ValueError, match="backend"):
        applies("fast", 1, 1)
