"""Miner base: metric matrix against loops, Mined conversions (masks, InfoNCE weights), ref/self-offset,
validation, registry and CLI listing."""

from __future__ import annotations

import json

import pytest
import torch

from pairlab import cli, registry
from pairlab.miners import BatchHardMiner, Mined
from pairlab.miners.base import pairwise, rowwise
from pairlab.objectives import NTXent
from pairlab.pairs import view_targets

MINERS = ["batch-hard", "batch-semi-hard", "batch-easy-hard", "multi-similarity", "distance-weighted", "pair-margin"]


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine", "dot"])
@pytest.mark.parametrize("norm", [True, False])
def test_pairwise_and_rowwise_against_loops(metric, norm):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    ux = x / x.norm(dim=1, keepdim=True) if norm or metric == "cosine" else x
    uy = y / y.norm(dim=1, keepdim=True) if norm or metric == "cosine" else y
    if metric == "dot":
        ux, uy = x, y
    ref = torch.empty(4, 5, dtype=torch.float64)
    for i in range(4):
        for j in range(5):
            diff = ux[i] - uy[j]
            ref[i, j] = {"euclidean": diff.norm(), "squared_euclidean": (diff**2).sum(),
                         "cosine": ux[i] @ uy[j], "dot": ux[i] @ uy[j]}[metric]
    assert torch.allclose(pairwise(x, y, metric, norm), ref, atol=1e-12)
    assert torch.allclose(rowwise(x, y[:4], metric, norm), torch.diagonal(ref[:, :4]), atol=1e-12)


def test_zero_distance_has_zero_not_nan_gradient():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    d = pairwise(x, x, "euclidean")
    (g,) = torch.autograd.grad(d.sum(), x)
    assert torch.isfinite(g).all()


def test_mined_masks_and_triplet_pairs():
    m = Mined.triplets(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 4]))
    pos, neg = m.masks(3, 5)
    assert pos.nonzero().tolist() == [[0, 2], [1, 3]]
    assert neg.nonzero().tolist() == [[0, 4], [1, 4]]
    bad = Mined(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="positive and negative"):
        bad.masks(2, 2)


def test_miner_weights_restrict_the_infonce_partition():
    """NTXent with mined negatives == brute-force NT-Xent whose partition holds the positive and the mined
    negatives only (a miner only changes W)."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    flat, targets, _ = view_targets(z)
    ids = torch.arange(6).repeat_interleave(2)
    mined = BatchHardMiner()(flat, ids)
    w = mined.weights(targets)
    out = NTXent(0.5, backend="dense")(z, weights=w)
    u = flat / flat.norm(dim=1, keepdim=True)
    pos_of = {i: i ^ 1 for i in range(12)}
    hard = dict(zip(mined.a1.tolist(), mined.n.tolist(), strict=True))
    total = 0.0
    for i in range(12):
        cands = [pos_of[i]] + ([hard[i]] if i in hard else [])
        s = torch.stack([u[i] @ u[j] / 0.5 for j in cands])
        total = total + torch.logsumexp(s, 0) - s[0]
    ref = total / 12
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(torch.autograd.grad(out, z)[0], torch.autograd.grad(ref, z)[0], atol=1e-12)


def test_ref_emb_excludes_the_self_pair_at_the_offset():
    g = torch.Generator().manual_seed(2)
    e = torch.randn(4, 3, generator=g)
    mem = torch.cat([torch.randn(3, 3, generator=g), e])
    labels = torch.tensor([0, 0, 1, 1])
    mem_labels = torch.tensor([2, 0, 1, 0, 0, 1, 1])
    mined = BatchHardMiner()(e, labels, mem, mem_labels, ref_self_offset=3)
    assert all(int(p) != int(a) + 3 for a, p in zip(mined.a1, mined.p, strict=True))
    # without the offset the copy of the anchor itself is a (zero-distance) positive candidate
    with pytest.raises(ValueError, match="ref_self_offset must lie in"):
        BatchHardMiner()(e, labels, mem, mem_labels, ref_self_offset=4)


def test_miner_bad_input():
    with pytest.raises(ValueError, match="labels is required"):
        BatchHardMiner()(torch.randn(4, 3), None)
    with pytest.raises(ValueError, match="labels must have shape"):
        BatchHardMiner()(torch.randn(4, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="metric must be one of"):
        BatchHardMiner(metric="l1")


def test_registered_and_listed_by_the_cli(capsys):
    assert set(MINERS) <= set(registry.available("miners"))
    assert cli.main(["list", "--json", "--kind", "miners"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)["miners"]}
    assert set(MINERS) <= set(listed)
    assert listed["batch-hard"]["output"] == "triplets"
    assert listed["pair-margin"]["output"] == "pairs"


@pytest.mark.parametrize("name", MINERS)
def test_every_miner_returns_valid_indices(name):
    g = torch.Generator().manual_seed(3)
    e = torch.randn(20, 6, generator=g)
    labels = torch.arange(20) % 5
    kw = {"seed": 0} if name == "distance-weighted" else {}
    mined = registry.build("miners", name, **kw)(e, labels)
    pos, neg = mined.masks(20, 20)
    same = labels[:, None] == labels[None, :]
    assert not (pos & ~same).any() and not (neg & same).any()
    assert not pos.diagonal().any()
    assert len(mined) > 0
