"""TinyDenoiser / train_denoiser: shapes, key-mask and token-permutation properties, training lowers the loss."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab.generative import FlowMatching, TinyDenoiser, train_denoiser
from pairlab.generative.denoiser import timestep_embedding


def test_timestep_embedding_closed_form():
    e = timestep_embedding(torch.tensor([0.0, 0.25]), 5)
    assert e.shape == (2, 5)
    torch.testing.assert_close(e[0], torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))
    freqs = torch.exp(-math.log(10000.0) * torch.arange(2) / 2)
    torch.testing.assert_close(e[1, :2], torch.cos(250.0 * freqs))
    torch.testing.assert_close(e[1, 2:4], torch.sin(250.0 * freqs))


def test_mask_and_token_permutation():
    torch.manual_seed(0)
    m = TinyDenoiser((1, 4, 4), cond_dim=6, hidden=16, depth=2, heads=2, width=8)
    x, t = torch.randn(3, 1, 4, 4), torch.rand(3)
    cond = torch.randn(3, 5, 6)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    out = m(x, t, cond, mask)
    assert out.shape == x.shape
    # padded (masked) tokens have no effect
    cond2 = cond.clone()
    cond2[~mask] = 100.0
    torch.testing.assert_close(m(x, t, cond2, mask), out)
    # no positions: permuting the condition tokens (with their mask) leaves the output unchanged
    p = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(m(x, t, cond[:, p], mask[:, p]), out, rtol=1e-5, atol=1e-5)
    # and the condition matters
    assert not torch.allclose(m(x, t, torch.randn(3, 5, 6), mask), out)


def test_bad_inputs():
    m = TinyDenoiser((4,), cond_dim=6, hidden=8, depth=1, heads=2, width=8)
    with pytest.raises(ValueError, match=r"x_t must have shape \[N, 4\]"):
        m(torch.randn(2, 5), torch.rand(2), torch.randn(2, 1, 6))
    with pytest.raises(ValueError, match=r"cond must have shape \[2, L, 6\]"):
        m(torch.randn(2, 4), torch.rand(2), torch.randn(2, 6))
    with pytest.raises(ValueError, match="width .7. must be divisible by heads .2."):
        TinyDenoiser((4,), width=7, heads=2)
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        train_denoiser(m, iter(()), -3)
    with pytest.raises(ValueError, match=r"cond_dropout must lie in \[0, 1\)"):
        train_denoiser(m, iter(()), 1, cond_dropout=1.0)
    with pytest.raises(ValueError, match="cond_dropout > 0 needs null_cond"):
        train_denoiser(m, iter(()), 1, cond_dropout=0.1)


class _Recorder(torch.nn.Module):
    """Predicts zeros through one parameter and records the condition parts it was called with."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[torch.Tensor, ...]] = []

    def forward(self, x_t, t, *parts):
        self.seen.append(tuple(p.clone() for p in parts))
        return x_t * self.w


def test_condition_dropout_replaces_whole_conditions_with_the_null_one():
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(200, 3, 4, generator=g) + 5.0
    mask = torch.ones(200, 3, dtype=torch.bool)
    null_tok, null_mask = torch.zeros(3, 4), torch.tensor([True, False, False])

    def batches():
        while True:
            yield torch.randn(200, 2, generator=g), (cond, mask)

    m = _Recorder()
    train_denoiser(m, batches(), 5, cond_dropout=0.3, null_cond=(null_tok, null_mask))
    dropped = 0
    for tok, msk in m.seen:
        is_null = (tok == 0).all(dim=(1, 2))
        assert torch.equal(tok[~is_null], cond[~is_null]) and bool(mask[~is_null].all())  # kept rows untouched
        assert bool((msk[is_null] == null_mask).all())  # dropped rows: the null condition, its mask too
        dropped += int(is_null.sum())
    assert 0.22 < dropped / 1000 < 0.38  # ~ Binomial(1000, 0.3)
    m2 = _Recorder()
    train_denoiser(m2, batches(), 1)
    assert torch.equal(m2.seen[0][0], cond)  # no dropout by default


def test_training_lowers_the_denoising_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 6, generator=g) * 2
    tokens = torch.randn(3, 2, 4, generator=g)

    def batches():
        while True:
            y = torch.randint(0, 3, (32,), generator=g)
            yield mu[y] + 0.1 * torch.randn(32, 6, generator=g), (tokens[y],)

    m = TinyDenoiser((6,), cond_dim=4, hidden=16, depth=1, heads=2, width=8)
    losses = train_denoiser(m, batches(), 50, lr=5e-3, noiser=FlowMatching())
    assert len(losses) == 50 and not m.training
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
