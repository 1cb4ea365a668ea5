"""Per-pair error matrix of a conditional generative model: ``err[i, j]`` for sample ``i`` under condition ``j``.

SoftREPA (Lee et al. 2025) and diffusion classifiers (Li et al. 2023) score a (sample, condition) pair by how well
the conditional denoiser reconstructs the sample's target under that condition::

    x_t, target = noiser(x0_i, eps, t)                   # ONE shared eps and ONE shared t for the whole grid
    err[i, j]   = mean_{all dims} (target - model(x_t, t, c_j))^2

The shared noise and timestep are what make ``err[i, j]`` comparable across conditions: with independent draws
the error differences between prompts drown in the noise of the draw. The official code shares one noise across
every sample and prompt of the batch (``set_noise(batch_size=1)``), which is the default here; a per-sample noise
``[B, ...]`` (still shared across the conditions of a row) is allowed.

The ``B x M`` pairs are evaluated in chunks of ``chunk_size`` model calls, so forward memory stays bounded by one
chunk; with ``checkpoint=True`` each chunk is recomputed in backward (``torch.utils.checkpoint``) so training
memory is bounded too. Model convention: ``model(x_t [N, ...], t [N], *cond_parts) -> prediction like x_t``, with
each condition part ``[N, ...]`` (e.g. tokens ``[N, L, D]`` and a mask ``[N, L]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from pairlab._validate import check_embeddings, check_labels, check_tensor
from pairlab.generative.schedules import FlowMatching

Noiser = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | float"], tuple[torch.Tensor, torch.Tensor]]


def _cond_parts(cond: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    parts = (cond,) if isinstance(cond, torch.Tensor) else tuple(cond)
    if not parts:
        raise ValueError("cond must be a tensor [M, ...] or a non-empty sequence of tensors with leading dim M")
    for k, p in enumerate(parts):
        check_tensor(f"cond[{k}]", p)
        if p.ndim < 1 or p.shape[0] != parts[0].shape[0]:
            shapes = [tuple(q.shape) for q in parts]
            raise ValueError(f"every cond part must share the leading dim M, got shapes {shapes}")
    if parts[0].shape[0] < 1:
        raise ValueError("cond must hold at least one condition (M >= 1)")
    return parts


def pair_errors(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    cond: torch.Tensor | Sequence[torch.Tensor],
    t: float | torch.Tensor,
    noise: torch.Tensor | None = None,
    *,
    noiser: Noiser | None = None,
    chunk_size: int = 1024,
    checkpoint: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The ``[B, M]`` error matrix of ``model`` for samples ``x0 [B, ...]`` and conditions ``cond [M, ...]``.

    Args:
        model: ``model(x_t, t, *cond_parts)``; called on at most ``chunk_size`` pairs at a time.
        x0: ``[B, ...]`` clean samples (images, latents, vectors).
        cond: ``[M, ...]`` conditions, or a sequence of tensors sharing the leading dim ``M`` (tokens, mask).
        t: one timestep in ``[0, 1]`` shared by every pair of the grid.
        noise: shared noise shaped like one sample (``x0.shape[1:]`` or ``[1, ...]``), or ``[B, ...]`` (one per
            sample, shared across the conditions of its row); default one draw ``N(0, 1)`` from ``generator``.
        noiser: ``noiser(x0, noise, t) -> (x_t, target)``; default :class:`~pairlab.generative.FlowMatching`.
        chunk_size: pairs per model call (>= 1); bounds memory.
        checkpoint: recompute each chunk in backward (bounded training memory) when gradients are enabled.

    Returns:
        ``err [B, M]`` float32 or wider: rows samples, columns conditions (the layout of ``ErrorContrast``).
    """
    check_tensor("x0", x0)
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape [B, ...] with at least 2 dims, got shape {tuple(x0.shape)}")
    check_embeddings("x0", x0, x0.ndim, "[B, ...]")
    parts = _cond_parts(cond)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    tt = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
    if tt.numel() != 1:
        raise ValueError(f"t must be one timestep shared by the grid (a scalar), got shape {tuple(tt.shape)}")
    tv = float(tt)
    if not 0.0 <= tv <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {tv}")
    b, m = x0.shape[0], parts[0].shape[0]
    sample_shape = tuple(x0.shape[1:])
    if noise is None:
        noise = torch.randn(sample_shape, generator=generator, dtype=x0.dtype).to(x0.device)
    check_tensor("noise", noise)
    if tuple(noise.shape) in (sample_shape, (1, *sample_shape)):
        noise = noise.reshape(1, *sample_shape).expand_as(x0)
    elif tuple(noise.shape) != tuple(x0.shape):
        raise ValueError(
            f"noise must have shape {list(sample_shape)} (shared) or {[b, *sample_shape]} (per sample) "
            f"like x0 {tuple(x0.shape)}, got {tuple(noise.shape)}"
        )
    noise = noise.to(dtype=x0.dtype, device=x0.device)
    noiser = FlowMatching() if noiser is None else noiser
    x_t, target = noiser(x0, noise, tt.reshape(()))

    rows = torch.arange(b, device=x0.device).repeat_interleave(m)
    cols = torch.arange(m, device=x0.device).repeat(b)

    def run(xc: torch.Tensor, tc: torch.Tensor, yc: torch.Tensor, *cs: torch.Tensor) -> torch.Tensor:
        pred = model(xc, tc, *cs)
        if pred.shape != xc.shape:
            raise ValueError(f"model output must have the shape of x_t {tuple(xc.shape)}, got {tuple(pred.shape)}")
        d = pred.float() - yc.float() if pred.dtype not in (torch.float32, torch.float64) else pred - yc
        return d.pow(2).reshape(d.shape[0], -1).mean(dim=1)

    out = []
    for start in range(0, b * m, chunk_size):
        r, c = rows[start : start + chunk_size], cols[start : start + chunk_size]
        args = (x_t[r], tt.expand(r.shape[0]), target[r], *(p[c] for p in parts))
        if checkpoint and torch.is_grad_enabled():
            out.append(_checkpoint(run, *args, use_reentrant=False))
        else:
            out.append(run(*args))
    return torch.cat(out).reshape(b, m)


def mean_pair_errors(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    cond: torch.Tensor | Sequence[torch.Tensor],
    ts: Sequence[float],
    *,
    noiser: Noiser | None = None,
    chunk_size: int = 1024,
    seed: int = 0,
) -> torch.Tensor:
    """Average of :func:`pair_errors` over several grids (one timestep of ``ts`` and a fresh shared noise each).

    Deterministic for a given ``seed``, so two models (e.g. before and after soft-token training) are compared on
    the same draws. Runs without gradient.
    """
    if len(ts) < 1:
        raise ValueError("ts must hold at least one timestep")
    g = torch.Generator().manual_seed(seed)
    total = None
    with torch.no_grad():
        for t in ts:
            e = pair_errors(model, x0, cond, float(t), noiser=noiser, chunk_size=chunk_size, generator=g)
            total = e if total is None else total + e
    return total / len(ts)


def matching_rank(err: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Rank (1 = lowest error) of each row's matching column among all columns: ``1 + #{j: err[i,j] < err[i,t_i]}``.

    ``targets [B]`` gives the matching column per row (default the diagonal). Ties count in the row's favour.
    """
    check_embeddings("err", err, 2, "[B, M]")
    b, m = err.shape
    if targets is None:
        if m < b:
            raise ValueError(f"err must have M >= B columns when targets is None, got shape {tuple(err.shape)}")
        targets = torch.arange(b, device=err.device)
    targets = check_labels("targets", targets, b, num_classes=m).to(err.device).long()
    own = err.gather(1, targets[:, None])
    return 1 + (err < own).sum(dim=1)
