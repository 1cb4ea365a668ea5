"""BadPairMemory: thresholds and weights against hand computations from the spec (§15), official flags."""

import math

import pytest
import torch

from pairlab import registry
from pairlab.weights.dbpm import BadPairMemory


def _filled(values, **kw):
    """Memory with values[t][i] recorded at epoch t."""
    values = torch.tensor(values, dtype=torch.float64)
    mem = BadPairMemory(num_samples=values.shape[1], max_epochs=kw.pop("max_epochs", 10), warm_epochs=1, **kw)
    for t in range(values.shape[0]):
        mem.record(torch.arange(values.shape[1]), values[t], epoch=t)
    return mem


def test_thresholds_and_weights_match_hand_computation():
    rows = [[1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.0, 0.1, 3.0]] * 2
    mem = _filled(rows, beta_np=1.2, beta_fp=1.2)
    mem.set_epoch(2)
    m = torch.tensor(rows[0], dtype=torch.float64)
    mu, sigma = m.mean(), m.std(unbiased=False)
    assert float(mem.mu) == pytest.approx(float(mu)) and float(mem.sigma) == pytest.approx(float(sigma))
    assert mem.noisy.tolist() == (m <= mu - 1.2 * sigma).tolist() and mem.noisy[8]
    assert mem.faulty.tolist() == (m >= mu + 1.2 * sigma).tolist() and mem.faulty[9]
    cur = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    w = mem(torch.tensor([8, 9, 0]), cur)
    want = [math.exp(-((float(cur[i]) - float(mu)) ** 2) / (2 * float(sigma) ** 2)) for i in range(2)] + [1.0]
    torch.testing.assert_close(w, torch.tensor(want, dtype=torch.float64))
    assert (w[:2] < 1).all()


def test_no_flags_during_warmup_or_zero_sigma():
    mem = _filled([[1.0, 1.0, 5.0]], beta_np=0.1, beta_fp=0.1)
    mem.warm_epochs = 3
    mem.set_epoch(1)
    assert not mem.noisy.any() and not mem.faulty.any()
    assert (mem(torch.arange(3), torch.ones(3)) == 1).all()
    flat = _filled([[2.0, 2.0, 2.0]])
    flat.set_epoch(1)
    assert not (flat.noisy | flat.faulty).any()


def test_official_linear_epoch_memory_differs_from_paper_mean():
    # sample 0 was hard early and easy late: the plain mean calls it average, the official epoch-weighted
    # mean (later epochs weigh more) calls it easy
    others = [1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 1.03, 0.97]
    rows = [[2.4] + others, [0.0] + others]
    paper = _filled(rows, beta_np=1.0, beta_fp=10.0, max_epochs=4)
    official = _filled(rows, beta_np=1.0, beta_fp=10.0, max_epochs=4, memory_weighting="linear_epoch")
    paper.set_epoch(2)
    official.set_epoch(2)
    t = torch.tensor(rows, dtype=torch.float64)
    m_off = ((t * torch.tensor([[1 / 4], [2 / 4]], dtype=torch.float64)).mean(0))
    torch.testing.assert_close(official.summary(2), m_off)
    torch.testing.assert_close(paper.summary(2), t.mean(0))
    assert not paper.noisy[0] and official.noisy[0]


def test_official_pdf_weight_can_exceed_one():
    rows = [[1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 0.5]]
    off = _filled(rows, beta_np=1.0, pdf_weight=True)
    pap = _filled(rows, beta_np=1.0)
    off.set_epoch(1)
    pap.set_epoch(1)
    assert off.noisy[7] and pap.noisy[7]
    idx, cur = torch.tensor([7]), torch.tensor([float(off.mu)], dtype=torch.float64)
    sigma = float(off.sigma)
    assert sigma < 1 / math.sqrt(2 * math.pi)
    assert float(off(idx, cur)) == pytest.approx(1 / (sigma * math.sqrt(2 * math.pi))) and float(off(idx, cur)) > 1
    assert float(pap(idx, cur)) == pytest.approx(1.0)


def test_registry_and_bad_input():
    mem = registry.build("weights", "dbpm", num_samples=4)
    assert registry.get("weights", "dbpm").meta["applies_to"] == "anchor"
    with pytest.raises(ValueError, match="index"):
        mem.record(torch.tensor([0, 4]), torch.ones(2))
    with pytest.raises(TypeError, match="index"):
        mem.record(torch.tensor([0.0, 1.0]), torch.ones(2))
    with pytest.raises(ValueError, match="losses"):
        mem.record(torch.tensor([0, 1]), torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="epoch"):
        mem.record(torch.tensor([0]), torch.ones(1), epoch=80)
    with pytest.raises(ValueError, match="memory_weighting"):
        BadPairMemory(4, memory_weighting="linear")
    with pytest.raises(ValueError, match="num_samples"):
        BadPairMemory(0)


# ------------------------------------------------------------------------------------------------ 2 ranks (gloo)
def _same_on_all_ranks(t: torch.Tensor) -> bool:
    import torch.distributed as dist

    t = t.nan_to_num(-1.0).contiguous()  # NaN (never recorded) != NaN for torch.equal
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return all(torch.equal(out[0], o) for o in out[1:])


def _dbpm_memory_identical_every_step(rank: int, world: int) -> int:
    from pairlab import distributed

    n, epochs, sizes = 20, 4, [3, 5]  # uneven per-rank batches; the global batch has 8 rows
    kw = dict(num_samples=n, max_epochs=epochs, warm_epochs=1, beta_np=0.5, beta_fp=0.5)
    mem = BadPairMemory(**kw)
    with distributed.local_only():  # the single-process reference fed the whole global batch
        ref = BadPairMemory(**kw)
    data = torch.Generator().manual_seed(7)  # the global batch, drawn identically on every rank
    lo = sum(sizes[:rank])
    checked = 0
    for epoch in range(epochs):
        mem.set_epoch(epoch)
        with distributed.local_only():
            ref.set_epoch(epoch)
        assert torch.equal(mem.noisy, ref.noisy) and torch.equal(mem.faulty, ref.faulty), f"flags, epoch {epoch}"
        assert mem.last_stats == ref.last_stats, f"stats differ from 1 process at epoch {epoch}"
        for step in range(3):
            ids = torch.randperm(n, generator=data)[:8]
            losses = torch.rand(8, generator=data, dtype=torch.float64) * 3
            mem.record(ids[lo : lo + sizes[rank]], losses[lo : lo + sizes[rank]].float())
            with distributed.local_only():
                ref.record(ids, losses.float())
            assert _same_on_all_ranks(mem.memory), f"memory differs across ranks at epoch {epoch} step {step}"
            assert torch.equal(mem.memory.isnan(), ref.memory.isnan()), f"2 ranks != 1 process at {epoch}/{step}"
            assert torch.equal(mem.memory.nan_to_num(-1), ref.memory.nan_to_num(-1)), f"2 ranks != 1 at {epoch}"
            checked += 1
    assert int(ref.noisy.sum() + ref.faulty.sum()) > 0  # the check compared some flagged pairs
    return checked


@pytest.mark.slow  # starts 2 fresh interpreters
def test_memory_identical_across_ranks_and_equal_to_one_process():
    from pairlab import distributed

    assert distributed.launch(_dbpm_memory_identical_every_step, 2, timeout=60.0) == [12, 12]
