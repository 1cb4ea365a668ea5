"""SigLIP: brute-force loop (float64, value and gradients of a, b, t, bias), dense == tiled with uneven
tiles, no B x N tensor saved by the tiled path, open_clip parity, bad input, half precision, and
2 ranks == 1 big batch (gloo)."""

from __future__ import annotations

import glob
import importlib.util
import math
import os

import pytest
import torch
import torch.distributed as dist

from pairlab import registry
from pairlab.objectives.siglip import SigLIPLoss, sigmoid_pair_loss_dense, sigmoid_pair_loss_tiled


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def brute_siglip(a, b, t, bias, extra=None):
    """-1/B sum_i sum_j log sigmoid(z_ij (t a_i.b_j + bias)), one pair at a time."""
    a, b = _unit(a), _unit(b)
    cols = b if extra is None else torch.cat([b, _unit(extra)])
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(cols.shape[0]):
            z = 1.0 if i == j else -1.0
            total = total - torch.nn.functional.logsigmoid(z * (t * (a[i] @ cols[j]) + bias))
    return total / n


def _ab(n=7, d=5, seed=0, dtype=torch.float64, m=None):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_(True)
    b = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_(True)
    e = None if m is None else torch.randn(m, d, generator=g, dtype=dtype).requires_grad_(True)
    return a, b, e


@pytest.mark.parametrize("backend", ["dense", "tiled"])
@pytest.mark.parametrize("m_extra", [None, 3])
def test_brute_force_value_and_grads(backend, m_extra):
    a, b, e = _ab(m=m_extra)
    loss_fn = SigLIPLoss(temperature=0.2, bias=-3.0, backend=backend, chunk_size=3).double()
    out = loss_fn(a, b, e)
    params = [loss_fn.temperature.log_scale, loss_fn.bias]
    ins = [a, b] + ([e] if e is not None else [])
    grads = torch.autograd.grad(out, ins + params)
    # reference: t = exp(log_scale), same leaves
    ls = loss_fn.temperature.log_scale.detach().clone().requires_grad_(True)
    bias = loss_fn.bias.detach().clone().requires_grad_(True)
    ref = brute_siglip(a, b, ls.exp(), bias, e)
    rgrads = torch.autograd.grad(ref, ins + [ls, bias])
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    for g, r in zip(grads, rgrads, strict=True):
        assert torch.allclose(g, r, atol=1e-12), (g, r)


@pytest.mark.parametrize("chunk", [1, 4, 5, 64])
def test_tiled_equals_dense_uneven_tiles(chunk):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(13, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(17, 6, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    for off in (0, 3):
        d = sigmoid_pair_loss_dense(a, b, s, bias, off)
        t = sigmoid_pair_loss_tiled(a, b, s, bias, off, chunk)
        gd = torch.autograd.grad(d, (a, b, s, bias))
        gt = torch.autograd.grad(t, (a, b, s, bias))
        assert t.item() == pytest.approx(d.item(), rel=1e-12)
        for x, y in zip(gd, gt, strict=True):
            assert torch.allclose(x, y, atol=1e-10)


def test_tiled_gradcheck():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *x: sigmoid_pair_loss_tiled(*x, 1, 2), (a, b, s, bias))


def _max_saved_numel(fn) -> int:
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.backward()
    return max(sizes)


def test_tiled_keeps_no_b_by_n_matrix():
    n, d = 384, 8
    a = torch.randn(n, d, requires_grad=True)
    b = torch.randn(n, d, requires_grad=True)
    tiled = _max_saved_numel(lambda: SigLIPLoss(backend="tiled", chunk_size=64)(a, b))
    dense = _max_saved_numel(lambda: SigLIPLoss(backend="dense")(a, b))
    assert dense >= n * n  # the dense path keeps the logits for backward
    assert tiled <= n * d  # the tiled path keeps only the (normalised) inputs


def test_auto_backend_switches_by_size(monkeypatch):
    import pairlab.objectives.siglip as mod

    calls = []
    real = mod.sigmoid_pair_loss_tiled
    monkeypatch.setattr(mod, "sigmoid_pair_loss_tiled", lambda *x: calls.append(1) or real(*x))
    a, b, _ = _ab(n=8)
    small = SigLIPLoss(backend="auto", tile_threshold=65)(a, b)
    assert calls == []
    big = SigLIPLoss(backend="auto", tile_threshold=64)(a, b)
    assert calls == [1]
    assert big.item() == pytest.approx(small.item(), rel=1e-12)


def _open_clip_loss():
    paths = glob.glob(os.path.join(os.path.dirname(torch.__file__), "..", "open_clip", "loss.py"))
    if not paths:
        pytest.skip("open_clip not installed")
    spec = importlib.util.spec_from_file_location("_oc_loss", paths[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # loss.py imports only torch
    return mod


@pytest.mark.parametrize("backend", ["dense", "tiled"])
def test_open_clip_parity(backend):
    oc = _open_clip_loss()
    a, b, _ = _ab(n=9, d=6)
    ours = SigLIPLoss(temperature=0.1, bias=-10.0, learnable_temperature=False, learnable_bias=False,
                      backend=backend, chunk_size=4).double()(a, b)
    ga = torch.autograd.grad(ours, a)[0]
    a2 = a.detach().clone().requires_grad_(True)
    ref = oc.SigLipLoss()(_unit(a2), _unit(b.detach()), torch.tensor(10.0, dtype=torch.float64),
                          torch.tensor(-10.0, dtype=torch.float64))
    gr = torch.autograd.grad(ref, a2)[0]
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(ga, gr, atol=1e-12)


def test_paper_defaults_and_clamp():
    f = SigLIPLoss()
    assert float(f.temperature.scale().detach()) == pytest.approx(10.0, rel=1e-6)
    assert float(f.bias.detach()) == -10.0
    assert f.temperature.log_scale.requires_grad and f.bias.requires_grad
    with torch.no_grad():
        f.temperature.log_scale.fill_(math.log(500.0))
    assert float(f.temperature.scale().detach()) == pytest.approx(500.0, rel=1e-5)  # paper: no clamp
    g = SigLIPLoss(max_scale=100)
    with torch.no_grad():
        g.temperature.log_scale.fill_(math.log(500.0))
    assert float(g.temperature.scale().detach()) == pytest.approx(100.0, rel=1e-5)  # open_clip clamp


def test_half_precision_inputs_compute_in_float32():
    a, b, _ = _ab(n=16, d=8, dtype=torch.float32)
    ref = SigLIPLoss()(a.detach(), b.detach())
    for backend in ("dense", "tiled"):
        out = SigLIPLoss(backend=backend, chunk_size=5)(a.detach().half(), b.detach().half())
        assert out.dtype == torch.float32
        assert out.item() == pytest.approx(ref.item(), rel=2e-3)


def test_stats_and_registry():
    a, b, _ = _ab()
    f = SigLIPLoss(temperature=0.5, bias=0.0).double()
    f(a, b)
    an, bn = _unit(a.detach()), _unit(b.detach())
    logits = 2.0 * an @ bn.T
    assert f.last_stats["pos_logit_mean"] == pytest.approx(float(logits.diag().mean()), rel=1e-6)
    off = logits[~torch.eye(7, dtype=torch.bool)]
    assert f.last_stats["neg_logit_mean"] == pytest.approx(float(off.mean()), rel=1e-6, abs=1e-9)
    e = registry.get("objectives", "siglip")
    assert e.obj is SigLIPLoss and e.meta["input"] == "pair"


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.randn(4, 3), torch.randn(5, 3)), "batch sizes must match"),
        ((torch.randn(4, 3), torch.randn(4, 2)), "embedding dims must match"),
        ((torch.randn(4, 2, 3), torch.randn(4, 3)), "a must have shape"),
        ((torch.randn(4, 3), torch.full((4, 3), float("nan"))), "b contains NaN"),
        ((torch.randn(4, 3), torch.randn(4, 3), torch.randn(2, 5)), "embedding dims must match"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        SigLIPLoss()(*args)


def test_bad_config():
    with pytest.raises(ValueError, match="bias"):
        SigLIPLoss(bias=float("inf"))
    with pytest.raises(ValueError, match="chunk_size"):
        SigLIPLoss(chunk_size=0)
    with pytest.raises(ValueError, match="temperature"):
        SigLIPLoss(temperature=0.0)
    with pytest.raises(ValueError, match="backend"):
        SigLIPLoss(backend="fast")


# ------------------------------------------------------------------------------ 2 ranks == 1 big batch
PARTS = [5, 3]  # uneven rank batches on purpose


def _dist_case(rank: int, world: int, backend: str) -> dict:
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pairlab import distributed

    g = torch.Generator().manual_seed(0)
    n = sum(PARTS)
    xa, xb = torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randn(n, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    enc = nn.Linear(4, 3).double()
    loss_fn = SigLIPLoss(temperature=0.3, bias=-2.0, backend=backend, chunk_size=2).double()
    model = DDP(enc) if world > 1 else enc
    sl = slice(sum(PARTS[:rank]), sum(PARTS[: rank + 1])) if world > 1 else slice(0, n)
    loss = loss_fn(model(xa[sl]), model(xb[sl]))
    loss.backward()
    distributed.average_gradients(loss_fn.parameters())
    total = loss.detach().clone()
    if world > 1:
        dist.all_reduce(total)
        total /= world
    grads = {k: p.grad.clone() for k, p in list(enc.named_parameters()) + list(loss_fn.named_parameters())}
    return {"loss": float(total), "grads": grads}


def _worker(rank: int, world: int) -> dict:
    return {b: _dist_case(rank, world, b) for b in ("dense", "tiled")}


@pytest.mark.slow  # two spawned processes take ~45 s on the shared 2-core machine
@pytest.mark.distributed
def test_two_ranks_equal_one_big_batch():
    from pairlab import distributed

    results = distributed.launch(_worker, 2, timeout=60)
    for backend in ("dense", "tiled"):
        single = _dist_case(0, 1, backend)
        for r in results:
            got = r[backend]
            assert got["loss"] == pytest.approx(single["loss"], rel=1e-10)
            for k, v in single["grads"].items():
                assert torch.allclose(got["grads"][k], v, atol=1e-10), (backend, k)
