"""Cross-batch memory: PML ``CrossBatchMemory`` parity over several steps (memory_only), the official
"batch + weight * memory" form, FIFO contents, self-pair exclusion, SigLIP extra columns, bad input."""

from __future__ import annotations

import pytest
import torch

from pairlab import registry
from pairlab.candidates.xbm import CrossBatchMemory
from pairlab.objectives.contrastive_margin import ContrastiveLoss
from pairlab.objectives.multi_similarity import MultiSimilarityLoss
from pairlab.objectives.siglip import SigLIPLoss
from pairlab.objectives.triplet import TripletMarginLoss


def _batches(steps=4, b=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    # every class twice per batch: each anchor has a positive (PML's MeanReducer then averages the same rows)
    return [(torch.randn(b, d, generator=g, dtype=torch.float64), (torch.arange(b) % 3)[torch.randperm(b, generator=g)])
            for _ in range(steps)]


@pytest.mark.parametrize("make", [lambda: (ContrastiveLoss(), "ContrastiveLoss"),
                                  lambda: (TripletMarginLoss(0.2), "TripletMarginLoss"),
                                  lambda: (MultiSimilarityLoss(), "MultiSimilarityLoss")])
def test_memory_only_matches_pml_over_steps(make):
    from pytorch_metric_learning import losses

    ours_loss, name = make()
    kw = {"margin": 0.2} if name == "TripletMarginLoss" else {}
    pml = losses.CrossBatchMemory(getattr(losses, name)(**kw), embedding_size=5, memory_size=15)
    pml.embedding_memory = pml.embedding_memory.double()
    xbm = CrossBatchMemory(ours_loss, dim=5, memory_size=15, mode="memory_only")
    for e, labels in _batches(steps=5):  # 30 rows through a memory of 15: wraps twice
        e1, e2 = e.clone().requires_grad_(True), e.clone().requires_grad_(True)
        out, ref = xbm(e1, labels), pml(e2, labels)
        assert out.item() == pytest.approx(ref.item(), rel=1e-6)
        g1, g2 = torch.autograd.grad(out, e1)[0], torch.autograd.grad(ref, e2)[0]
        assert torch.allclose(g1, g2, atol=1e-6)


def test_official_form_is_batch_plus_weighted_memory():
    batches = _batches(steps=3)
    xbm = CrossBatchMemory(ContrastiveLoss(neg_margin=1.2), dim=5, memory_size=12, weight=0.5, dtype=torch.float64)
    f = ContrastiveLoss(neg_margin=1.2)
    seen_e, seen_l = [], []
    for e, labels in batches:
        seen_e.append(e)
        seen_l.append(labels)
        mem_e, mem_l = torch.cat(seen_e)[-12:], torch.cat(seen_l)[-12:]
        ref = f(e, labels) + 0.5 * f(e, labels, ref_emb=mem_e, ref_labels=mem_l,
                                     ref_self_offset=mem_e.shape[0] - e.shape[0])
        assert xbm(e, labels).item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.equal(xbm.memory.negatives(ordered=True), torch.cat(seen_e)[-12:])


def test_memory_term_excludes_only_the_anchor_itself():
    """A duplicate of an anchor from an earlier batch is a real positive at distance 0; its own row is not."""
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    xbm = CrossBatchMemory(ContrastiveLoss(pos_margin=0.0, reduction="mean"), dim=2, memory_size=8,
                           mode="memory_only")
    with pytest.raises(ValueError, match="no positive pair"):
        xbm(e, labels)  # memory = the batch itself: without self-pairs there is no positive
    e2 = e.clone().requires_grad_(True)
    out = xbm(e2, labels)  # memory = both batches: each anchor's earlier copy is a positive at distance 0
    assert xbm.loss.last_stats["pos_pairs"] == 2 and xbm.loss.last_stats["neg_pairs"] == 4
    assert out.item() == 0.0  # positives at distance 0, negatives at sqrt(2) > neg_margin 1
    assert torch.isfinite(torch.autograd.grad(out, e2)[0]).all()


def test_start_step_delays_the_memory_term():
    batches = _batches(steps=2)
    xbm = CrossBatchMemory(ContrastiveLoss(), dim=5, memory_size=24, start_step=1)
    e, labels = batches[0]
    assert xbm(e, labels).item() == pytest.approx(ContrastiveLoss()(e, labels).item(), rel=1e-12)
    assert len(xbm.memory) == 6 and xbm.last_stats["memory_used"] == 0.0
    xbm(*batches[1])
    assert xbm.last_stats["memory_used"] == 1.0


def test_siglip_memory_is_previous_batches_as_extra_columns():
    g = torch.Generator().manual_seed(1)
    pairs = [(torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)) for _ in range(3)]
    loss = SigLIPLoss(learnable_temperature=False, learnable_bias=False)
    xbm = CrossBatchMemory(loss, dim=3, memory_size=6)
    prev = []
    for a, b in pairs:
        extra = torch.cat(prev)[-6:] if prev else None
        ref = loss(a, b, extra=extra)
        assert xbm(a, b).item() == pytest.approx(ref.item(), rel=1e-6)
        prev.append(b)


def test_registry_and_bad_input():
    assert registry.get("candidates", "xbm").obj is CrossBatchMemory
    built = CrossBatchMemory("triplet-margin", dim=5, memory_size=12, loss_kwargs={"margin": 0.1})
    assert isinstance(built.loss, TripletMarginLoss) and built.loss.margin == 0.1
    with pytest.raises(TypeError, match="InfoNCE views objectives"):
        CrossBatchMemory(torch.nn.Linear(2, 2), dim=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        CrossBatchMemory(ContrastiveLoss(), dim=5, mode="pml")
    with pytest.raises(ValueError, match="margin losses only"):
        CrossBatchMemory(SigLIPLoss(), dim=5, weight=0.5)
    xbm = CrossBatchMemory(ContrastiveLoss(), dim=5, memory_size=4)
    e, labels = _batches(steps=1)[0]
    with pytest.raises(ValueError, match="must hold at least one global batch"):
        xbm(e, labels)
    with pytest.raises(ValueError, match="the memory's dim"):
        CrossBatchMemory(ContrastiveLoss(), dim=3, memory_size=40)(e, labels)
