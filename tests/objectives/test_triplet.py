"""Triplet margin loss against a triple loop (float64, value and gradient), PML, and the O(B^2)
all-triplets path against explicit enumeration."""

from __future__ import annotations

import pytest
import torch

from pairlab.miners import BatchHardMiner, Mined
from pairlab.objectives.triplet import TripletMarginLoss


def _data(b=10, seed=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, generator=g, dtype=torch.float64, requires_grad=True), torch.arange(b) % classes


def _dist(u, i, j, metric):
    if metric == "euclidean":
        return (u[i] - u[j]).norm()
    if metric == "squared_euclidean":
        return ((u[i] - u[j]) ** 2).sum()
    return -(u[i] @ u[j])  # similarity as distance-like


def brute(e, labels, margin, metric, reduction, triplets=None, smooth=False, swap=False):
    u = e / e.norm(dim=1, keepdim=True)
    n = len(labels)
    if triplets is None:
        triplets = [(a, p, q) for a in range(n) for p in range(n) for q in range(n)
                    if a != p and labels[a] == labels[p] and labels[q] != labels[a]]
    vals = []
    for a, p, q in triplets:
        dan = _dist(u, a, q, metric)
        if swap:
            dan = torch.minimum(dan, _dist(u, p, q, metric))
        v = _dist(u, a, p, metric) - dan + margin
        vals.append(torch.nn.functional.softplus(v) if smooth else torch.relu(v))
    v = torch.stack(vals)
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    nz = (v > 0).sum()
    return v.sum() / nz if nz else v.sum() * 0


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
@pytest.mark.parametrize("reduction", ["mean", "mean_nonzero", "sum"])
@pytest.mark.parametrize("margin", [0.05, 0.5])
def test_all_triplets_brute_force(metric, reduction, margin):
    e, labels = _data()
    out = TripletMarginLoss(margin, metric=metric, reduction=reduction)(e, labels)
    ref = brute(e, labels, margin, metric, reduction)
    (g,) = torch.autograd.grad(out, e)
    (gr,) = torch.autograd.grad(ref, e)
    assert out.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(g, gr, atol=1e-10)


@pytest.mark.parametrize("smooth, swap", [(False, False), (True, False), (False, True), (True, True)])
def test_explicit_triplets_brute_force(smooth, swap):
    e, labels = _data(b=12, seed=3)
    mined = BatchHardMiner()(e, labels)
    trip = list(zip(*(t.tolist() for t in mined.as_tuple()), strict=True))
    trip = trip + trip[:3]  # duplicates count, as in PML
    idx = tuple(torch.tensor(x) for x in zip(*trip, strict=True))
    out = TripletMarginLoss(0.1, smooth=smooth, swap=swap, reduction="mean")(e, labels, idx)
    ref = brute(e, labels, 0.1, "euclidean", "mean", trip, smooth, swap)
    (g,) = torch.autograd.grad(out, e)
    (gr,) = torch.autograd.grad(ref, e)
    assert out.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(g, gr, atol=1e-10)


def test_mined_pairs_use_all_triplets_sharing_an_anchor():
    e, labels = _data(b=9, seed=4)
    pairs = Mined(torch.tensor([0, 0, 1]), torch.tensor([3, 6, 4]), torch.tensor([0, 1, 1, 2]),
                  torch.tensor([1, 0, 2, 3]))
    trip = [(0, 3, 1), (0, 6, 1), (1, 4, 0), (1, 4, 2)]
    out = TripletMarginLoss(0.3, reduction="sum")(e, labels, pairs)
    assert out.item() == pytest.approx(brute(e, labels, 0.3, "euclidean", "sum", trip).item(), rel=1e-10)


@pytest.mark.parametrize("kw, red", [({}, None), ({"margin": 0.3}, "mean")])
def test_pml_parity(kw, red):
    from pytorch_metric_learning.losses import TripletMarginLoss as PML
    from pytorch_metric_learning.reducers import MeanReducer

    e, labels = _data(b=16, seed=1, classes=4)
    ours = TripletMarginLoss(**kw, **({"reduction": red} if red else {}))(e, labels)
    e2 = e.detach().clone().requires_grad_(True)
    ref = PML(**kw, **({"reducer": MeanReducer()} if red else {}))(e2, labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(torch.autograd.grad(ours, e)[0], torch.autograd.grad(ref, e2)[0], atol=1e-10)


def test_pml_parity_with_batch_hard_miner():
    from pytorch_metric_learning.losses import TripletMarginLoss as PML
    from pytorch_metric_learning.miners import BatchHardMiner as PMLMiner

    e, labels = _data(b=16, seed=2, classes=4)
    ours = TripletMarginLoss(0.2, miner="batch-hard")(e, labels)
    ref = PML(0.2)(e.detach(), labels, PMLMiner()(e.detach(), labels))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)


def test_smooth_without_triplets_is_a_clear_error():
    e, labels = _data()
    with pytest.raises(ValueError, match="need explicit triplets"):
        TripletMarginLoss(smooth=True)(e, labels)
