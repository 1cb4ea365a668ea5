"""pair_errors / mean_pair_errors / matching_rank: float64 brute-force loops, chunk and checkpoint parity,
the shared-noise property, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pairlab.generative import FlowMatching, VariancePreserving, matching_rank, mean_pair_errors, pair_errors


class ToyCond(nn.Module):
    """pred = tanh(x_t W + c U + t) with cond c [N, D]; an optional key mask multiplies the condition."""

    def __init__(self, d: int = 5, dc: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5)
        self.u = nn.Parameter(torch.randn(dc, d, generator=g, dtype=torch.float64) * 0.5)

    def forward(self, x_t, t, c, scale=None):
        z = x_t @ self.w + c @ self.u + t[:, None]
        if scale is not None:
            z = z * scale[:, None]
        return torch.tanh(z)


def brute_force(model, x0, cond, t, noise, noiser, scale=None):
    b, m = x0.shape[0], cond.shape[0]
    out = torch.zeros(b, m, dtype=torch.float64)
    for i in range(b):
        x_t, target = noiser(x0[i : i + 1], noise.reshape(1, -1), t)
        for j in range(m):
            extra = () if scale is None else (scale[j : j + 1],)
            pred = model(x_t, torch.tensor([t], dtype=torch.float64), cond[j : j + 1], *extra)
            out[i, j] = ((pred - target) ** 2).mean()
    return out


@pytest.mark.parametrize("noiser", [FlowMatching(), VariancePreserving()])
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 1000])
def test_matches_brute_force_loop(noiser, chunk_size):
    g = torch.Generator().manual_seed(1)
    model = ToyCond()
    x0 = torch.randn(4, 5, generator=g, dtype=torch.float64)
    cond = torch.randn(6, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(5, generator=g, dtype=torch.float64)
    err = pair_errors(model, x0, cond, 0.37, noise, noiser=noiser, chunk_size=chunk_size)
    assert err.shape == (4, 6) and err.dtype == torch.float64
    torch.testing.assert_close(err, brute_force(model, x0, cond, 0.37, noise, noiser), rtol=1e-12, atol=1e-14)


def test_cond_sequence_parts_are_indexed_together():
    g = torch.Generator().manual_seed(2)
    model = ToyCond()
    x0 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    cond = torch.randn(4, 3, generator=g, dtype=torch.float64)
    scale = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    noise = torch.randn(5, generator=g, dtype=torch.float64)
    err = pair_errors(model, x0, (cond, scale), 0.6, noise, noiser=FlowMatching(), chunk_size=5)
    ref = brute_force(model, x0, cond, 0.6, noise, FlowMatching(), scale=scale)
    torch.testing.assert_close(err, ref, rtol=1e-12, atol=1e-14)


def test_chunked_checkpointed_gradients_equal_unchunked():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    cond = torch.randn(5, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(5, generator=g, dtype=torch.float64)
    grads = []
    for chunk, ckpt in ((1000, False), (4, False), (4, True), (1, True)):
        model = ToyCond()
        c = cond.clone().requires_grad_(True)
        err = pair_errors(model, x0, c, 0.5, noise, chunk_size=chunk, checkpoint=ckpt)
        (err * torch.arange(15, dtype=torch.float64).reshape(3, 5)).sum().backward()
        grads.append((model.w.grad.clone(), model.u.grad.clone(), c.grad.clone()))
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_shared_noise_makes_conditions_comparable():
    """A model that ignores its condition gives exactly equal errors along each row with the shared noise,
    and (per-sample noise) still equal within a row; independent noise per pair would not."""
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(4, 5, generator=g, dtype=torch.float64)
    cond = torch.randn(6, 3, generator=g, dtype=torch.float64)

    def blind(x_t, t, c):
        return x_t * 0.3

    err = pair_errors(blind, x0, cond, 0.4, generator=g)
    assert torch.equal(err, err[:, :1].expand_as(err))
    per_sample = torch.randn(4, 5, generator=g, dtype=torch.float64)
    err2 = pair_errors(blind, x0, cond, 0.4, per_sample)
    assert torch.equal(err2, err2[:, :1].expand_as(err2))
    # and the shared noise really is shared by every sample: row i equals a one-sample grid with the same noise
    noise = torch.randn(5, generator=g, dtype=torch.float64)
    full = pair_errors(blind, x0, cond, 0.4, noise)
    for i in range(4):
        torch.testing.assert_close(full[i], pair_errors(blind, x0[i : i + 1], cond, 0.4, noise)[0])


def test_images_and_generator_determinism():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 12)).double()

    def f(x_t, t, c):
        return model(x_t).reshape(x_t.shape) + c.sum(-1)[:, None, None, None]

    x0 = torch.randn(2, 1, 3, 4, dtype=torch.float64)
    cond = torch.randn(3, 2, dtype=torch.float64)
    a = pair_errors(f, x0, cond, 0.5, generator=torch.Generator().manual_seed(7))
    b = pair_errors(f, x0, cond, 0.5, generator=torch.Generator().manual_seed(7))
    assert a.shape == (2, 3) and torch.equal(a, b)
    m1 = mean_pair_errors(f, x0, cond, [0.2, 0.8], seed=3)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        ref = (pair_errors(f, x0, cond, 0.2, generator=g) + pair_errors(f, x0, cond, 0.8, generator=g)) / 2
    torch.testing.assert_close(m1, ref)


def test_matching_rank_brute_force():
    g = torch.Generator().manual_seed(5)
    err = torch.rand(7, 10, generator=g)
    targets = torch.randint(0, 10, (7,), generator=g)
    ranks = matching_rank(err, targets)
    for i in range(7):
        assert ranks[i].item() == 1 + sum(err[i, j].item() < err[i, targets[i]].item() for j in range(10))
    diag = matching_rank(torch.tensor([[0.1, 0.2], [0.1, 0.3]]))
    assert diag.tolist() == [1, 2]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(x0=torch.randn(5)), ValueError, r"x0 must have shape \[B, ...\]"),
        (dict(x0=torch.ones(2, 5, dtype=torch.long)), TypeError, "x0 must be a floating tensor"),
        (dict(x0=torch.full((2, 5), float("nan"))), ValueError, "x0 contains NaN"),
        (dict(cond=(torch.randn(3, 3), torch.randn(2))), ValueError, "share the leading dim M"),
        (dict(cond=()), ValueError, "non-empty sequence"),
        (dict(t=1.5), ValueError, r"t must lie in \[0, 1\]"),
        (dict(t=torch.rand(2)), ValueError, "one timestep shared by the grid"),
        (dict(noise=torch.randn(3, 5)), ValueError, "noise must have shape"),
        (dict(chunk_size=0), ValueError, "chunk_size must be an int >= 1"),
    ],
)
def test_bad_inputs(kwargs, exc, match):
    args = dict(model=ToyCond().float(), x0=torch.randn(2, 5), cond=torch.randn(3, 3), t=0.5)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        pair_errors(**args)


def test_model_output_shape_checked():
    with pytest.raises(ValueError, match="model output must have the shape of x_t"):
        pair_errors(lambda x, t, c: x[:, :2], torch.randn(2, 5), torch.randn(3, 3), 0.5)
