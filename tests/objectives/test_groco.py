"""GroCo: brute-force float64 reference (loops + the diffsort package as sorter), ordering monotonicity."""

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives.groco import GroCo, group_order_bce

diffsort = pytest.importorskip("diffsort")


def _bce(p, t):
    return -(t * p.clamp_min(1e-300).log().clamp_min(-100) + (1 - t) * (1 - p).clamp_min(1e-300).log().clamp_min(-100))


def _reference(z, topk, n_pos, steepness=1.0, stop_grad=True):
    """Spec §11(b), one anchor/sample at a time."""
    b, k, _ = z.shape
    x = z / z.norm(dim=-1, keepdim=True)
    total = 0.0
    for a in range(k):
        rows = []
        for i in range(b):
            pos = sorted((x[i, a] * (x[i, p].detach() if stop_grad else x[i, p])).sum() for p in range(n_pos) if p != a)
            negs = [(x[i, a] * (x[j, a].detach() if stop_grad else x[j, a])).sum() for j in range(b) if j != i]
            negs = sorted(negs, key=lambda t: float(t.detach()))[-topk:]
            rows.append(torch.stack(list(negs) + list(pos)))
        sims = torch.stack(rows)
        n = sims.shape[1]
        sorter = diffsort.DiffSortNet("odd_even", n, steepness=steepness, distribution="cauchy")
        sorter.sorting_network = [[m.double() for m in ms] for ms in sorter.sorting_network]
        _, perm = sorter(sims)
        bce = 0.0
        for i in range(b):
            for e in range(n):
                t = 1.0 if e >= topk else 0.0
                p_pos = perm[i, e, topk:].sum().clamp(0, 1)
                p_neg = perm[i, e, :topk].sum().clamp(0, 1)
                bce = bce + 0.5 * (_bce(p_pos, t) + _bce(p_neg, 1 - t))
        total = total + bce / (b * n)
    return total / k


@pytest.mark.parametrize("k,n_pos,stop_grad", [(2, None, True), (3, None, False), (4, 2, True)])
def test_matches_reference_value_and_grad(k, n_pos, stop_grad):
    g = torch.Generator().manual_seed(k)
    z = torch.randn(7, k, 5, dtype=torch.float64, generator=g, requires_grad=True)
    obj = GroCo(steepness=2.0, topk_neg=3, stop_grad=stop_grad, n_pos_views=n_pos)
    got = obj(z)
    want = _reference(z, 3, k if n_pos is None else n_pos, 2.0, stop_grad)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (g1,) = torch.autograd.grad(got, z)
    (g2,) = torch.autograd.grad(want, z)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-12)
    assert obj.last_stats["pos_neg_dist"] == pytest.approx(obj.last_stats["pos_min"] - obj.last_stats["neg_max"])


def test_gradcheck():
    z = torch.randn(6, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: GroCo(topk_neg=3, stop_grad=False)(t), (z,))


def test_monotone_in_ordering_quality():
    # spec §11(d)2 / Appendix A: separated < interleaved < reversed; loss never near 0 at steepness 1
    negs = torch.linspace(-0.5, 0.0, 10, dtype=torch.float64)
    sep = torch.cat([negs, torch.tensor([0.5], dtype=torch.float64)])[None]  # gap 0.5
    sep_big = torch.cat([negs, torch.tensor([1.0], dtype=torch.float64)])[None]  # gap 1.0
    inter = torch.cat([negs, torch.tensor([-0.25], dtype=torch.float64)])[None]
    rev = torch.cat([negs, torch.tensor([-1.0], dtype=torch.float64)])[None]
    vals = [float(group_order_bce(x, 10, steepness=1.0)) for x in (sep_big, sep, inter, rev)]
    assert vals[0] < vals[1] < vals[2] < vals[3], vals
    assert vals[0] > 0.1  # the soft relaxation never reaches 0
    # only the group order matters: permuting within a group leaves the targets equivalent
    assert math.isfinite(vals[3])


def test_training_step_increases_margin():
    torch.manual_seed(0)
    base = torch.randn(32, 16)
    enc = torch.nn.Linear(16, 8)
    obj = GroCo(topk_neg=5, steepness=1.0)
    opt = torch.optim.Adam(enc.parameters(), lr=0.05)
    margins = []
    for _ in range(60):
        views = torch.stack([base + 0.3 * torch.randn_like(base) for _ in range(2)], 1)
        loss = obj(enc(views))
        opt.zero_grad()
        loss.backward()
        opt.step()
        margins.append(obj.last_stats["pos_neg_dist"])
    assert sum(margins[-10:]) / 10 > sum(margins[:10]) / 10 + 0.1


def test_registry_and_bad_input():
    obj = registry.build("objectives", "groco", topk_neg=2)
    assert isinstance(obj, GroCo)
    assert registry.get("objectives", "groco").meta["input"] == "views"
    with pytest.raises(ValueError, match="topk_neg"):
        GroCo(topk_neg=0)
    with pytest.raises(ValueError, match="at least topk_neg"):
        GroCo(topk_neg=10)(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match=r"\[B, K, D\]"):
        GroCo(topk_neg=2)(torch.randn(5, 4))
    with pytest.raises(ValueError, match="K >= 2"):
        GroCo(topk_neg=2)(torch.randn(5, 1, 4))
    with pytest.raises(ValueError, match="NaN"):
        GroCo(topk_neg=2)(torch.full((5, 2, 4), float("nan")))
    with pytest.raises(ValueError, match="network"):
        GroCo(network="merge")
