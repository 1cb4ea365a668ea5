"""MoCo queue and momentum encoder: FIFO against a list model, MoCo loss against a hand-written one, 2 ranks."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from pairlab import distributed, registry
from pairlab.candidates.queue import MomentumEncoder, Queue, momentum_update
from pairlab.objectives import InfoNCE, NTXent, SupCon


@pytest.mark.parametrize("init", ["empty", "random"])
@pytest.mark.parametrize("size", [1, 5, 8])
def test_fifo_and_wraparound_match_list_and_ring_models(init: str, size: int) -> None:
    rng = random.Random(size)
    q = Queue(size, 3, with_labels=True, init=init, dtype=torch.float64)
    initial = [(row, None) for row in q.negatives(ordered=True)]  # random rows (none if empty)
    fifo = list(initial)  # oldest first
    ring = [r for r, _ in initial] + [None] * (size - len(initial))
    ring_lab = [None] * size
    ptr, counter = 0, 0
    for _ in range(12):
        n = rng.choice([0, 1, 2, 3, size, size + 3])
        keys = torch.arange(counter, counter + n, dtype=torch.float64)[:, None].repeat(1, 3)
        labels = torch.arange(counter, counter + n) * 10
        counter += n
        q.enqueue(keys, labels)
        for key, lab in zip(keys, labels, strict=True):  # brute force: one row at a time
            fifo.append((key, int(lab)))
            fifo = fifo[-size:]
            ring[ptr], ring_lab[ptr] = key, int(lab)
            ptr = (ptr + 1) % size
        assert len(q) == len(fifo)
        assert torch.equal(q.negatives(ordered=True), torch.stack([k for k, _ in fifo]).reshape(-1, 3))
        filled = [i for i in range(size) if ring[i] is not None]
        assert torch.equal(q.negatives(), torch.stack([ring[i] for i in filled]).reshape(-1, 3))
        lab_ordered = q.negative_labels(ordered=True).tolist()
        for got, (_, lab) in zip(lab_ordered, fifo, strict=True):
            assert got == lab if lab is not None else got < -(2**60)  # random rows match no label
        assert int(q.ptr) == ptr


def test_empty_queue_and_copy_semantics() -> None:
    q = Queue(4, 2, init="empty")
    assert len(q) == 0 and q.negatives().shape == (0, 2)
    z = torch.randn(3, 2, 2, requires_grad=True)
    q.enqueue(torch.randn(3, 2))
    neg = q.negatives()
    loss = NTXent(0.5)(z, extra=neg)
    q.enqueue(z[:, 0])  # enqueue before backward: the loss keeps its own copy, detached keys stored
    loss.backward()
    assert not q.keys.requires_grad and z.grad is not None
    assert not torch.equal(q.negatives(), neg)


def test_moco_loss_with_queue_equals_hand_written() -> None:
    g = torch.Generator().manual_seed(0)
    q = Queue(16, 8, seed=3, dtype=torch.float64)
    q.enqueue(torch.randn(5, 8, generator=g, dtype=torch.float64))
    query = torch.randn(6, 8, generator=g, dtype=torch.float64, requires_grad=True)
    key = torch.randn(6, 8, generator=g, dtype=torch.float64)
    tau = 0.2
    loss = InfoNCE(tau)(query, key, negative_keys=q.negatives())
    (gq,) = torch.autograd.grad(loss, query)
    # MoCo Algorithm 1: l_pos = q.k, l_neg = q.queue^T, CE([l_pos, l_neg] / tau, 0), on unit vectors
    qn, kn, queue = F.normalize(query, dim=1), F.normalize(key, dim=1), F.normalize(q.negatives(), dim=1)
    logits = torch.cat([(qn * kn).sum(1, keepdim=True), qn @ queue.T], dim=1) / tau
    ref = F.cross_entropy(logits, torch.zeros(6, dtype=torch.long))
    (gref,) = torch.autograd.grad(ref, query)
    torch.testing.assert_close(loss, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(gq, gref, atol=1e-12, rtol=0)


def test_supcon_positives_from_the_queue_match_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    q = Queue(6, 4, with_labels=True, dtype=torch.float64)  # random rows (label matches nothing) + 3 real
    q.enqueue(torch.randn(3, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 5]))
    z = torch.randn(4, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    tau = 0.3
    loss = SupCon(tau)(z, labels, extra=q.negatives(), extra_labels=q.negative_labels())
    # brute force L_out: anchors = 8 views; candidates = other views + 6 queue rows; positives = same label
    cand = torch.cat([z.reshape(8, 4), q.negatives()])
    cand_lab = torch.cat([labels.repeat_interleave(2), q.negative_labels()])
    total, used = 0.0, 0
    for i in range(8):
        others = [j for j in range(cand.shape[0]) if j != i]
        s = {j: F.cosine_similarity(cand[i], cand[j], dim=0) / tau for j in others}
        log_z = torch.logsumexp(torch.stack([s[j] for j in others]), 0)
        pos = [j for j in others if cand_lab[j] == cand_lab[i]]
        if pos:
            total = total + sum(log_z - s[j] for j in pos) / len(pos)
            used += 1
    torch.testing.assert_close(loss, total / used, atol=1e-12, rtol=0)


def test_momentum_encoder_is_an_ema_without_grad() -> None:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    key = MomentumEncoder(online, momentum=0.9)
    before = [p.detach().clone() for p in key.module.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    key.update(online)
    for b, pk, pq in zip(before, key.module.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(pk, 0.9 * b + 0.1 * pq)
        assert not pk.requires_grad
    out = key(torch.randn(5, 3))
    assert not out.requires_grad
    key.update(online, momentum=0.0)  # m = 0 copies
    assert all(torch.equal(a, b) for a, b in zip(key.module.parameters(), online.parameters(), strict=True))
    with pytest.raises(ValueError, match="same parameters"):
        momentum_update(key.module, nn.Linear(3, 4), 0.5)
    with pytest.raises(ValueError, match="momentum"):
        MomentumEncoder(online, momentum=1.5)


def test_bad_input_registry_and_state_dict() -> None:
    q = Queue(4, 3)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        q.enqueue(torch.randn(2, 5))
    with pytest.raises(ValueError, match="with_labels"):
        q.enqueue(torch.randn(2, 3), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="with_labels"):
        q.negative_labels()
    with pytest.raises(ValueError, match="labels is required"):
        Queue(4, 3, with_labels=True).enqueue(torch.randn(2, 3))
    with pytest.raises(TypeError, match="integer"):
        Queue(4, 3, with_labels=True).enqueue(torch.randn(2, 3), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        q.enqueue(torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="size"):
        Queue(0, 3)
    assert registry.get("candidates", "queue").obj is Queue
    q.enqueue(torch.randn(3, 3))
    q2 = Queue(4, 3, seed=9)
    q2.load_state_dict(q.state_dict())
    assert torch.equal(q2.negatives(ordered=True), q.negatives(ordered=True)) and int(q2.ptr) == 3
    assert torch.equal(Queue(4, 3, seed=1).keys, Queue(4, 3, seed=1).keys)  # same on every rank


# ------------------------------------------------------------------------------------- 2 ranks, MoCo
PARTS = [3, 2]
STEPS = 3


def moco_run(rank: int, world: int) -> dict:
    """MoCo with a DDP query encoder, an EMA key encoder and a queue, ``STEPS`` SGD steps."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(sum(PARTS), 2, 5, generator=g, dtype=torch.float64) for _ in range(STEPS)]
    torch.manual_seed(1)
    enc = nn.Linear(5, 3).double()
    key_enc = MomentumEncoder(enc, momentum=0.5)
    queue = Queue(7, 3, seed=0, dtype=torch.float64)
    model = DDP(enc) if world > 1 else enc
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    obj = InfoNCE(0.2)
    s = sum(PARTS[:rank]) if world > 1 else 0
    e = s + PARTS[rank] if world > 1 else sum(PARTS)
    out: dict = {"losses": [], "grads": [], "queues": []}
    for t in range(STEPS):
        x = xs[t][s:e]
        qv, kv = model(x[:, 0]), key_enc(x[:, 1])
        loss = obj(qv, kv, negative_keys=queue.negatives())
        queue.enqueue(kv)
        opt.zero_grad()
        loss.backward()
        opt.step()
        key_enc.update(enc)
        out["losses"].append(loss.detach())
        out["grads"].append({n: p.grad.clone() for n, p in enc.named_parameters()})
        out["queues"].append(queue.negatives(ordered=True))
    return out


@pytest.mark.distributed
def test_moco_two_ranks_queue_identical_and_equal_to_big_batch() -> None:
    ranks = distributed.launch(moco_run, 2, timeout=90)
    ref = moco_run(0, 1)
    for t in range(STEPS):
        torch.testing.assert_close(sum(r["losses"][t] for r in ranks) / 2, ref["losses"][t], atol=1e-9, rtol=0)
        for r in ranks:
            assert torch.equal(r["queues"][t], ranks[0]["queues"][t])  # identical on every rank, every step
            torch.testing.assert_close(r["queues"][t], ref["queues"][t], atol=1e-9, rtol=0)
            for n, gref in ref["grads"][t].items():
                torch.testing.assert_close(r["grads"][t][n], gref, atol=1e-9, rtol=0)
