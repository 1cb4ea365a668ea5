"""Shared behaviour of the margin losses (contrastive, triplet, multi-similarity, circle, lifted):
bad input names the argument, no-positive batches raise (PML returns a silent 0), O(B*M) memory
(PML's lifted/triplet enumerations are O(B^3)), half precision, reference embeddings, miners by name."""

from __future__ import annotations

import pytest
import torch

from pairlab import registry
from pairlab.miners import BatchHardMiner, Mined
from pairlab.objectives.circle import CircleLoss
from pairlab.objectives.contrastive_margin import ContrastiveLoss
from pairlab.objectives.lifted import LiftedStructureLoss
from pairlab.objectives.margin import log1p_sum_exp, masked_logsumexp
from pairlab.objectives.multi_similarity import MultiSimilarityLoss
from pairlab.objectives.triplet import TripletMarginLoss

LOSSES = [ContrastiveLoss, TripletMarginLoss, MultiSimilarityLoss, CircleLoss, LiftedStructureLoss]
NAMES = ["contrastive-margin", "triplet-margin", "multi-similarity", "circle", "lifted-structure"]


def _data(b=12, d=6, classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(b, d, generator=g, dtype=dtype, requires_grad=True)
    labels = torch.arange(b) % classes
    return e, labels


@pytest.mark.parametrize("cls", LOSSES)
def test_no_positive_raises_by_default_and_zero_is_explicit(cls):
    e, _ = _data(b=6)
    distinct = torch.arange(6)
    with pytest.raises(ValueError, match="no .* in the batch"):
        cls()(e, distinct)
    kw = {"neg_margin": 2.1} if cls is ContrastiveLoss else {}
    out = cls(on_no_positive="zero", **kw)(e, distinct)
    (g,) = torch.autograd.grad(out, e, allow_unused=False)
    if cls is ContrastiveLoss:  # only the positive part is zeroed; negatives still push apart
        assert out.item() > 0
    else:
        assert out.item() == 0.0 and torch.count_nonzero(g) == 0


@pytest.mark.parametrize("cls", LOSSES)
def test_bad_input_names_the_argument(cls):
    e, labels = _data()
    f = cls()
    with pytest.raises(ValueError, match="embeddings must have shape"):
        f(e.reshape(6, 2, 6), labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        f(e, labels[:5])
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        f(e, labels.float())
    with pytest.raises(ValueError, match="embeddings contains NaN"):
        f(torch.full_like(e, float("nan")), labels)
    with pytest.raises(ValueError, match="labels .* is required"):
        f(e)
    with pytest.raises(ValueError, match="indices_tuple.p indices must lie in"):
        f(e, labels, (torch.tensor([0]), torch.tensor([99]), torch.tensor([1])))
    with pytest.raises(TypeError, match="indices_tuple must be"):
        f(e, labels, (torch.tensor([0]), torch.tensor([1])))
    with pytest.raises(ValueError, match="ref_labels .* is required"):
        f(e, labels, ref_emb=e.detach())
    with pytest.raises(ValueError, match="ref_self_offset must lie in"):
        f(e, labels, ref_emb=e.detach(), ref_labels=labels, ref_self_offset=3)
    with pytest.raises(ValueError, match="reduction must be one of"):
        cls(reduction="avg")
    with pytest.raises(ValueError, match="unknown miner"):
        cls(miner="hardest")


def test_similarity_only_losses_reject_distances():
    with pytest.raises(ValueError, match="metric must be one of"):
        CircleLoss(metric="euclidean")


def _saved_numels(fn):
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        out = fn()
    out.backward()
    return sizes


@pytest.mark.parametrize("cls", LOSSES)
def test_memory_is_quadratic_not_cubic(cls):
    b = 192  # B^3 = 7.1M elements; every saved tensor must stay O(B^2)
    e = torch.randn(b, 8, requires_grad=True)
    labels = torch.arange(b) % 4  # 48 positives per anchor: O(P*N) enumerations would be ~B^3/4
    sizes = _saved_numels(lambda: cls()(e, labels))
    assert max(sizes) <= 2 * b * b
    assert sum(sizes) <= 40 * b * b


@pytest.mark.parametrize("cls", LOSSES)
def test_half_precision_embeddings_are_scored_in_float32(cls):
    e, labels = _data(dtype=torch.float32)
    ref = cls()(e.detach(), labels)
    out = cls()(e.detach().half(), labels)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    assert out.item() == pytest.approx(ref.item(), rel=5e-2, abs=5e-3)


@pytest.mark.parametrize("cls", LOSSES)
def test_ref_emb_with_self_offset_equals_in_batch(cls):
    """Candidates = a memory that contains the batch at an offset: same pairs as the in-batch call."""
    e, labels = _data()
    g = torch.Generator().manual_seed(5)
    filler = torch.randn(4, 6, generator=g, dtype=torch.float64)
    far_labels = torch.tensor([100, 101, 102, 103])  # classes absent from the batch: only negatives
    f = cls(reduction="sum")
    ref_emb = torch.cat([filler, e])
    ref_labels = torch.cat([far_labels, labels])
    # restrict to the batch part through a mask-free check: extra rows only add negatives, so compare
    # against the in-batch loss with the same rows appended as explicit negatives via indices
    out_ref = f(e, labels, ref_emb=ref_emb, ref_labels=ref_labels, ref_self_offset=4)
    # brute equivalence: in-batch call on the concatenation, anchors = the batch rows
    big = f(torch.cat([filler, e]), ref_labels, _anchor_pairs(labels, far_labels))
    assert out_ref.item() == pytest.approx(big.item(), rel=1e-10)


def _anchor_pairs(labels, far_labels):
    """All (a1, p, a2, n) pairs of the concatenation whose anchor is a batch row (offset 4)."""
    all_lab = torch.cat([far_labels, labels])
    n = all_lab.shape[0]
    a = torch.arange(4, n)[:, None].expand(-1, n)
    c = torch.arange(n)[None, :].expand(len(labels), -1)
    same = all_lab[a] == all_lab[c]
    notself = a != c
    pos, neg = same & notself, ~same
    return a[pos], c[pos], a[neg], c[neg]


@pytest.mark.parametrize("cls, name", list(zip(LOSSES, NAMES, strict=True)))
def test_registered_with_labels_input(cls, name):
    entry = registry.get("objectives", name)
    assert entry.obj is cls and entry.meta["input"] == "labels"
    e, labels = _data()
    built = registry.build("objectives", name)
    assert built(e, labels).item() == pytest.approx(cls()(e, labels).item(), rel=1e-12)


def test_miner_by_name_equals_explicit_miner():
    e, labels = _data()
    mined = BatchHardMiner()(e, labels)
    assert isinstance(mined, Mined) and mined.is_triplets
    a = TripletMarginLoss(margin=0.2, miner="batch-hard")(e, labels)
    b = TripletMarginLoss(margin=0.2)(e, labels, mined)
    c = TripletMarginLoss(margin=0.2)(e, labels, mined.as_tuple())  # PML-style tuple
    assert a.item() == b.item() == c.item()
    d = TripletMarginLoss(margin=0.2, miner="pair-margin", miner_kwargs={"pos_margin": 0.0, "neg_margin": 2.0})
    assert d(e, labels).item() == pytest.approx(TripletMarginLoss(margin=0.2)(e, labels).item(), rel=1e-12)


def test_multi_view_convention():
    """z [B, K, D] -> loss(z.flatten(0, 1), labels.repeat_interleave(K)) (documented for the loop)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 2, 4, generator=g, dtype=torch.float64)
    ids = torch.arange(5)
    flat, lab = z.flatten(0, 1), ids.repeat_interleave(2)
    assert torch.equal(flat[3], z[1, 1]) and lab[3] == 1
    # instance pairing: every view's only positive is the other view of its sample
    out = TripletMarginLoss(margin=0.1, reduction="sum")(flat, lab)
    u = flat / flat.norm(dim=1, keepdim=True)
    d = torch.cdist(u, u)
    ref = sum(torch.relu(d[i, i ^ 1] - d[i, n] + 0.1) for i in range(10) for n in range(10) if n // 2 != i // 2)
    assert out.item() == pytest.approx(float(ref), rel=1e-10)


def test_masked_logsumexp_helpers():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out, has = masked_logsumexp(x, mask)
    assert has.tolist() == [True, False]
    assert out[0].item() == pytest.approx(torch.logsumexp(torch.tensor([1.0, 3.0]), 0).item())
    assert out[1].item() == float("-inf")
    (g,) = torch.autograd.grad(out[0], x)
    assert torch.isfinite(g).all() and g[1].abs().sum() == 0
    l1 = log1p_sum_exp(x, mask)
    assert l1[0].item() == pytest.approx(float(torch.log(1 + x.detach()[0, 0].exp() + x.detach()[0, 2].exp())))
    assert l1[1].item() == 0.0
