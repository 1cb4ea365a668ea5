"""Distributed faults and cross-rank consistency with 2 CPU processes (gloo, :func:`pairlab.distributed.launch`).

- A rank that dies (hard exit, no exception) makes the launch end with a clear error naming the dead rank within
  the collective timeout, instead of hanging; so does a rank that raises.
- State every rank must agree on stays identical, checked after *every* step: the MoCo queue (keys and labels,
  uneven per-rank batches, wrapping), MoCHi's queue, and InterCLR's memory bank and pseudo-labels.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.distributed as dist

from pairlab import distributed, registry

TIMEOUT = 30.0
# each launch starts 2 fresh interpreters (torch + pairlab imports): slow on a shared 2-core machine; run by make test
pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------ dead ranks
def _die_before_collective(rank: int, world: int) -> float:
    if rank == 1:
        time.sleep(0.5)
        os._exit(3)  # no exception, no cleanup: like a SIGKILL or an OOM kill
    t = torch.ones(4)
    for _ in range(100):
        dist.all_reduce(t)
    return float(t.sum())


def _die_mid_training(rank: int, world: int) -> int:
    torch.manual_seed(rank)
    q = registry.build("candidates", "queue", size=32, dim=4)
    for step in range(1000):
        if rank == 1 and step == 5:
            os._exit(9)
        q.enqueue(torch.randn(3, 4))
    return step


def _raise_on_rank1(rank: int, world: int) -> None:
    if rank == 1:
        raise RuntimeError("boom on rank 1")
    dist.barrier()


@pytest.mark.parametrize("fn", [_die_before_collective, _die_mid_training], ids=["before_collective", "mid_training"])
def test_dead_rank_is_a_clear_error_not_a_hang(fn):
    t0 = time.monotonic()
    with pytest.raises((RuntimeError, TimeoutError)) as exc:
        distributed.launch(fn, 2, timeout=TIMEOUT)
    elapsed = time.monotonic() - t0
    msg = str(exc.value)
    assert elapsed < 2 * TIMEOUT + 30, f"took {elapsed:.0f}s"
    assert "rank 1" in msg and "exited with code" in msg, msg


def test_raising_rank_is_reported_with_its_traceback():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"rank 1 failed:[\s\S]*boom on rank 1"):
        distributed.launch(_raise_on_rank1, 2, timeout=TIMEOUT)
    assert time.monotonic() - t0 < 2 * TIMEOUT + 30


# ------------------------------------------------------------------------------------------------ identical state
def _same_on_all_ranks(t: torch.Tensor) -> bool:
    t = t.contiguous()
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return all(torch.equal(out[0], o) for o in out[1:])


def _queue_identical_every_step(rank: int, world: int) -> int:
    torch.manual_seed(100 + rank)  # different data per rank
    q = registry.build("candidates", "queue", size=13, dim=4, with_labels=True)
    checked = 0
    for step in range(25):
        n = 3 if rank == 0 else 5  # uneven batches; 8 keys per step wrap the 13-slot queue
        q.enqueue(torch.randn(n, 4), torch.randint(0, 5, (n,)))
        assert _same_on_all_ranks(q.negatives(ordered=True)), f"queue keys differ at step {step}"
        assert _same_on_all_ranks(q.negative_labels(ordered=True)), f"queue labels differ at step {step}"
        checked += 1
    return checked


def _mochi_identical_every_step(rank: int, world: int) -> int:
    torch.manual_seed(200 + rank)
    q = registry.build("candidates", "queue", size=16, dim=8)
    gen = registry.build("candidates", "mochi", num_hard=4, num_mix=2, num_query_mix=1, queue=q, seed=0)
    obj = registry.build("objectives", "ntxent")
    checked = 0
    for step in range(15):
        z = torch.randn(4, 2, 8, requires_grad=True)
        c = gen(z)
        loss = obj(c.views_or(z), **c.objective_kwargs())
        loss.backward()
        gen.update(z.detach())
        assert _same_on_all_ranks(q.negatives(ordered=True)), f"MoCHi queue differs at step {step}"
        checked += 1
    return checked


def _interclr_identical_every_step(rank: int, world: int) -> int:
    n, d = 24, 8
    feats = torch.randn(n, d, generator=torch.Generator().manual_seed(0))  # the same dataset features everywhere
    kw = dict(num_clusters=3, neg_num=4, pool=8, min_cluster=3, centroid_every=2, seed=0)
    gen = registry.build("candidates", "interclr", **kw)
    gen.init_memory(feats)
    with distributed.local_only():  # the single-process reference sees the whole global batch
        ref = registry.build("candidates", "interclr", **kw)
        ref.init_memory(feats)
    # init_memory keeps rank 0's memory even when the ranks' feature extractions differ slightly ...
    other = registry.build("candidates", "interclr", **kw)
    other.init_memory(feats + 1e-3 * rank * torch.randn(n, d))
    assert torch.equal(other.bank, ref.bank) and torch.equal(other.labels, ref.labels)
    # ... and refuses, on every rank, features of different shapes (not the whole dataset everywhere)
    with pytest.raises(ValueError, match=r"features must have the same shape \[N, D\] on every rank"):
        other.init_memory(feats[: n - rank])
    data = torch.Generator().manual_seed(300)  # the global batch, drawn identically on every rank
    torch.manual_seed(400 + rank)  # local draws (sampling) differ per rank
    checked = 0
    for step in range(10):
        sizes = [3, 5]  # uneven per-rank batches; the gathered batch has 8 rows
        ids = torch.randperm(n, generator=data)[:8]
        if step % 4 == 3:
            ids[5] = ids[0]  # the same sample on both ranks (DistributedSampler padding): the last write wins
        z = torch.randn(8, 2, d, generator=data)
        lo = sum(sizes[:rank])
        gen(z[lo : lo + sizes[rank]], ids=ids[lo : lo + sizes[rank]])  # local sampling consumes each rank's rng
        gen.update(z[lo : lo + sizes[rank]], ids=ids[lo : lo + sizes[rank]])
        with distributed.local_only():
            ref.update(z, ids=ids)
        assert _same_on_all_ranks(gen.bank), f"InterCLR memory bank differs across ranks at step {step}"
        assert _same_on_all_ranks(gen.labels), f"InterCLR pseudo-labels differ across ranks at step {step}"
        assert _same_on_all_ranks(gen.centroids), f"InterCLR centroids differ across ranks at step {step}"
        assert torch.equal(gen.bank, ref.bank), f"2 ranks != 1 process (bank) at step {step}"
        assert torch.equal(gen.labels, ref.labels), f"2 ranks != 1 process (pseudo-labels) at step {step}"
        assert gen.last_stats == ref.last_stats, f"change_ratio is not the global one at step {step}"
        checked += 1
    return checked


def test_queue_identical_across_ranks_every_step():
    assert distributed.launch(_queue_identical_every_step, 2, timeout=60.0) == [25, 25]


def test_mochi_queue_identical_across_ranks_every_step():
    assert distributed.launch(_mochi_identical_every_step, 2, timeout=60.0) == [15, 15]


def test_interclr_bank_and_pseudo_labels_identical_across_ranks_every_step():
    assert distributed.launch(_interclr_identical_every_step, 2, timeout=60.0) == [10, 10]
