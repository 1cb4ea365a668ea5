"""MoCHi: hard sets vs a brute-force sort, mixes in the span of their sources, per-anchor mask, loss vs a loop."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.candidates.base import Candidates
from pairlab.candidates.mochi import MoCHi
from pairlab.candidates.queue import Queue
from pairlab.objectives import NTXent


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _hard_sets_loop(z: torch.Tensor, n_hard: int) -> list[list[int]]:
    """For every flat anchor row: indices (flat rows) of its n_hard most similar views of other samples."""
    b, k, d = z.shape
    flat = _unit(z.reshape(b * k, d).double())
    out = []
    for r in range(b * k):
        cands = [(float(flat[r] @ flat[c]), c) for c in range(b * k) if c // k != r // k]
        cands.sort(reverse=True)
        out.append([c for _, c in cands[:n_hard]])
    return out


def _coeffs(target: torch.Tensor, basis: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Least-squares coefficients of target in span(basis) and the residual norm."""
    a = torch.stack(basis, dim=1)
    sol = torch.linalg.lstsq(a, target[:, None]).solution[:, 0]
    return sol, float((a @ sol - target).norm())


def test_mixes_are_convex_combinations_of_the_brute_force_hard_set() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 2, 8, dtype=torch.float64)
    gen = MoCHi(num_hard=2, num_mix=5, num_query_mix=4, seed=1)
    c = gen(z)
    n, s, s2 = 12, 5, 4
    hard = _hard_sets_loop(z, 2)
    flat = _unit(z.reshape(n, 8))
    assert c.extra.shape == (n * (s + s2), 8)
    assert torch.allclose(c.extra.norm(dim=1), torch.ones(n * (s + s2), dtype=torch.float64))
    for r in range(n):
        h = c.extra[r * s : (r + 1) * s]
        for row in h:  # h = normalize(alpha n_a + (1 - alpha) n_b) with n_a, n_b in the hard set
            coef, res = _coeffs(row, [flat[hard[r][0]], flat[hard[r][1]]])
            assert res < 1e-9 and bool((coef >= -1e-9).all())
        h2 = c.extra[n * s + r * s2 : n * s + (r + 1) * s2]
        for row in h2:  # h' = normalize(beta q + (1 - beta) n_a), beta < 0.5, n_a in the hard set
            ok = False
            for a in hard[r]:
                coef, res = _coeffs(row, [flat[r], flat[a]])
                if res < 1e-9 and bool((coef >= -1e-9).all()) and coef[0] / coef.sum() < 0.5:
                    ok = True
            assert ok


def test_mask_gives_each_anchor_its_own_rows_and_share_gives_all() -> None:
    z = torch.randn(4, 2, 5)
    c = MoCHi(num_hard=3, num_mix=2, num_query_mix=1, seed=0)(z)
    owners = torch.cat([torch.arange(8).repeat_interleave(2), torch.arange(8).repeat_interleave(1)])
    assert torch.equal(c.mask, owners[None, :] == torch.arange(8)[:, None])
    c2 = MoCHi(num_hard=3, num_mix=2, num_query_mix=1, share=True, seed=0)(z)
    assert c2.mask is None and torch.equal(c2.extra, c.extra)


def test_loss_with_mochi_candidates_equals_per_anchor_loop() -> None:
    torch.manual_seed(3)
    z = torch.randn(5, 2, 6, dtype=torch.float64, requires_grad=True)
    gen = MoCHi(num_hard=3, num_mix=2, num_query_mix=2, seed=0)
    c = gen(z)
    tau = 0.2
    loss = NTXent(temperature=tau)(c.views_or(z), **c.objective_kwargs())
    b, k, d = z.shape
    flat = _unit(z.detach().reshape(b * k, d))
    extra = c.extra
    ref = 0.0
    for r in range(b * k):
        own = [m for m in range(extra.shape[0]) if c.mask[r, m]]
        logits = [float(flat[r] @ flat[j]) / tau for j in range(b * k) if j != r]
        logits += [float(flat[r] @ extra[m]) / tau for m in own]
        pos = float(flat[r] @ flat[(r // k) * k + (1 - r % k)]) / tau
        ref += -pos + math.log(sum(math.exp(x) for x in logits))
    assert loss.item() == pytest.approx(ref / (b * k), rel=1e-10)
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_no_mixing_leaves_loss_and_gradient_unchanged() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 2, 4, dtype=torch.float64, requires_grad=True)
    c = MoCHi(num_hard=4, num_mix=0, num_query_mix=0)(z)
    assert c.num_extra == 0 and c.mask is None
    l1 = NTXent()(c.views_or(z), **c.objective_kwargs())
    (g1,) = torch.autograd.grad(l1, z)
    l0 = NTXent()(z)
    (g0,) = torch.autograd.grad(l0, z)
    assert torch.equal(l1, l0) and torch.equal(g1, g0)


def test_synthetic_negatives_are_harder_and_proxy_accuracy_drops() -> None:
    torch.manual_seed(0)
    z = torch.randn(64, 2, 16)
    c = MoCHi(num_hard=16, num_mix=16, num_query_mix=8, seed=0)(z)
    n = 128
    q = _unit(z.reshape(n, 16))
    s = q @ q.T
    sample = torch.arange(64).repeat_interleave(2)
    neg = sample[:, None] != sample[None, :]
    se = q @ c.extra.T
    own_h = c.mask.clone()
    own_h[:, n * 16 :] = False
    own_h2 = c.mask & ~own_h
    assert se[own_h].mean() > s[neg].mean()  # harder than the average in-batch negative
    assert se[own_h2].mean() > se[own_h].mean()  # query mixes are harder still
    # proxy task (is the positive the top score?) is harder with the synthetic columns
    pos = (q.view(64, 2, 16)[:, 0] * q.view(64, 2, 16)[:, 1]).sum(-1).repeat_interleave(2)
    top_real = s.masked_fill(~neg, -2).max(dim=1).values
    top_all = torch.maximum(top_real, se.masked_fill(~c.mask, -2).max(dim=1).values)
    assert (pos > top_all).float().mean() < (pos > top_real).float().mean()


def test_queue_pool_rows_first_enqueue_key_view_and_oracle_labels() -> None:
    gen = MoCHi(num_hard=2, num_mix=1, num_query_mix=1, queue_size=6, dim=3, with_labels=True, seed=0)
    z = torch.randn(3, 2, 3)
    labels = torch.tensor([0, 1, 2])
    c0 = gen(z, labels)  # empty queue: nothing to mix
    assert c0.num_extra == 0
    gen.update(z, labels)
    assert torch.equal(gen.queue.negatives(), z[:, -1])
    c = gen(z, labels)
    assert torch.allclose(c.extra[:3], _unit(z[:, -1]))
    assert c.mask[:, :3].all()  # queue rows are shared
    assert torch.equal(c.oracle_labels[:3], labels)
    assert c.extra.shape[0] == 3 + 6 * 2


def test_start_epoch_and_registry_defaults() -> None:
    gen = registry.build("candidates", "mochi")
    assert isinstance(gen, MoCHi) and (gen.num_hard, gen.num_mix, gen.num_query_mix) == (1024, 512, 256)
    z = torch.randn(4, 2, 3)
    assert MoCHi(num_hard=2, start_epoch=5)(z, epoch=4).num_extra == 0
    assert MoCHi(num_hard=2, num_mix=1, num_query_mix=0, start_epoch=5)(z, epoch=5).num_extra == 8
    assert isinstance(gen(z), Candidates)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"num_hard": 0}, "num_hard"), ({"num_mix": -1}, "num_mix"), ({"queue_size": 8}, "dim"),
     ({"max_query_beta": 0.7}, "max_query_beta")],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MoCHi(**kwargs)


def test_bad_inputs() -> None:
    gen = MoCHi(num_hard=2)
    with pytest.raises(ValueError, match=r"z must have shape \[B, K, D\]"):
        gen(torch.randn(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        gen(torch.full((2, 2, 3), float("nan")))
    with pytest.raises(TypeError, match="labels"):
        gen(torch.randn(2, 2, 3), torch.tensor([0.5, 1.0]))
    q = Queue(4, 3, with_labels=True, init="empty")
    with pytest.raises(ValueError, match="labels is required"):
        MoCHi(queue=q).update(torch.randn(2, 2, 3))
