"""A small conditional denoiser (MLP trunk + cross-attention to condition tokens) and its training loop.

Not a paper method: the CPU-sized stand-in for SD3/SD1.5 that SoftREPA's error-contrast check needs. A sample
``x_t`` (e.g. a 28x28 image, flattened) and a timestep ``t in [0, 1]`` go through an MLP trunk; each block
cross-attends from the trunk state (one query) to the condition tokens ``[N, L, D]`` (text-encoder token
embeddings, optionally with soft tokens inserted), with an optional key mask ``[N, L]``. Before that, the condition
tokens pass ``context_layers`` self-attention layers among themselves (the text stream of SD3's joint blocks), so
inserted soft tokens can reshape the prompt tokens, not only dilute them. Like SD3's
``context_embedder``, a linear (no normalisation) projection maps condition tokens into the model width, so
near-zero soft tokens start with a small effect.

:func:`train_denoiser` trains it with the plain denoising loss ``E ||target - model(x_t, t, c)||^2`` of a
schedule (:class:`~pairlab.generative.FlowMatching` by default, ``t ~ U[0, 1]``), AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from pairlab.generative.pair_errors import Noiser
from pairlab.generative.schedules import FlowMatching


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[N, dim]`` of ``t`` in ``[0, 1]`` (scaled by 1000 like DDPM's integer steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float().reshape(-1, 1) * 1000.0) * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class _Block(nn.Module):
    """MLP on the trunk state, then cross-attention from it (one query) to the context tokens."""

    def __init__(self, hidden: int, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.temb = nn.Linear(hidden, hidden)
        self.q, self.o = nn.Linear(hidden, width), nn.Linear(width, hidden)
        self.kv = nn.Linear(width, 2 * width)

    def forward(self, h: torch.Tensor, temb: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor | None):
        h = h + self.mlp(self.ln1(h + self.temb(temb)))
        n, length, width = ctx.shape
        dh = width // self.heads
        q = self.q(self.ln2(h)).reshape(n, self.heads, 1, dh)
        k, v = self.kv(ctx).reshape(n, length, 2, self.heads, dh).permute(2, 0, 3, 1, 4)
        am = None if mask is None else mask[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=am)
        return h + self.o(a.reshape(n, width))


class _ContextLayer(nn.Module):
    """Self-attention among the condition tokens (as the text stream of SD3's joint blocks), pre-norm."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.o = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, ctx: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, length, width = ctx.shape
        dh = width // self.heads
        q, k, v = self.qkv(self.ln1(ctx)).reshape(n, length, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        am = None if mask is None else mask[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=am).transpose(1, 2).reshape(n, length, width)
        ctx = ctx + self.o(a)
        return ctx + self.mlp(self.ln2(ctx))


class TinyDenoiser(nn.Module):
    """``model(x_t [N, *shape], t [N], cond [N, L, cond_dim], mask [N, L] | None) -> prediction [N, *shape]``.

    Args:
        shape: one sample's shape, e.g. ``(1, 28, 28)``.
        cond_dim: width of the condition tokens (MiniLM: 384).
        hidden: trunk width; depth: number of blocks.
        width: attention width of the context (divisible by ``heads``).
        context_layers: self-attention layers over the condition tokens before the trunk reads them.
        context_norm: a final LayerNorm on the context tokens (as CLIP's text encoder ends in
            ``final_layer_norm`` and SD3's text stream is normalised per token): a token's scale is fixed, so what
            other tokens (soft tokens included) add to it through self-attention changes its direction, and
            removing a component shared by every prompt re-scales the prompt-specific rest.
    """

    def __init__(
        self,
        shape: Sequence[int] = (1, 28, 28),
        cond_dim: int = 384,
        hidden: int = 256,
        depth: int = 2,
        heads: int = 4,
        width: int = 64,
        context_layers: int = 1,
        context_norm: bool = False,
    ):
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.shape = tuple(int(s) for s in shape)
        self.cond_dim, self.hidden = cond_dim, hidden
        n_in = math.prod(self.shape)
        self.inp = nn.Linear(n_in, hidden)
        self.t_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.ctx = nn.Linear(cond_dim, width)
        self.ctx_layers = nn.ModuleList(_ContextLayer(width, heads) for _ in range(context_layers))
        self.ctx_ln = nn.LayerNorm(width) if context_norm else nn.Identity()
        self.blocks = nn.ModuleList(_Block(hidden, width, heads) for _ in range(depth))
        self.out_ln = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, n_in)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if tuple(x_t.shape[1:]) != self.shape:
            raise ValueError(f"x_t must have shape [N, {', '.join(map(str, self.shape))}], got {tuple(x_t.shape)}")
        if cond.ndim != 3 or cond.shape[0] != x_t.shape[0] or cond.shape[-1] != self.cond_dim:
            raise ValueError(f"cond must have shape [{x_t.shape[0]}, L, {self.cond_dim}], got {tuple(cond.shape)}")
        n = x_t.shape[0]
        temb = self.t_mlp(timestep_embedding(torch.as_tensor(t, device=x_t.device).expand(n), self.hidden))
        h = self.inp(x_t.reshape(n, -1)) + temb
        ctx = self.ctx(cond)
        for layer in self.ctx_layers:
            ctx = layer(ctx, mask)
        ctx = self.ctx_ln(ctx)
        for blk in self.blocks:
            h = blk(h, temb, ctx, mask)
        return self.out(self.out_ln(h)).reshape(x_t.shape)


def _drop(part: torch.Tensor, null: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    if tuple(null.shape) != tuple(part.shape[1:]):
        raise ValueError(
            f"null_cond parts must have one sample's shape {tuple(part.shape[1:])}, got {tuple(null.shape)}"
        )
    keep = (~drop).reshape(-1, *([1] * (part.ndim - 1)))
    return torch.where(keep, part, null.to(part.device, part.dtype).unsqueeze(0))


def train_denoiser(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, Sequence[torch.Tensor]]],
    steps: int,
    *,
    noiser: Noiser | None = None,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    cond_dropout: float = 0.0,
    null_cond: Sequence[torch.Tensor] | None = None,
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Denoising training: per sample ``t ~ U[0, 1]``, ``eps ~ N(0, 1)``, loss ``mean (target - pred)^2``.

    ``batches`` yields ``(x0 [N, ...], cond_parts)`` with the matching conditions of each sample. Cosine decay
    of the learning rate to 0 over ``steps``. Returns the loss per step.

    ``cond_dropout`` (classifier-free guidance training, Ho & Salimans 2022): each sample's condition is replaced
    by ``null_cond`` (one tensor per condition part, shaped like one sample's part, e.g. the null prompt ``""``'s
    tokens ``[L, D]`` and mask ``[L]``) with this probability, so the model also learns the unconditional
    prediction and its conditional prediction has to carry the condition's information.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not 0.0 <= float(cond_dropout) < 1.0:
        raise ValueError(f"cond_dropout must lie in [0, 1), got {cond_dropout!r}")
    if cond_dropout > 0 and null_cond is None:
        raise ValueError("cond_dropout > 0 needs null_cond (the null condition, one tensor per condition part)")
    noiser = FlowMatching() if noiser is None else noiser
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    model.train()
    for step in range(steps):
        x0, parts = next(batches)
        t = torch.rand(x0.shape[0], generator=g).to(x0.device)
        eps = torch.randn(x0.shape, generator=g).to(x0.device, x0.dtype)
        x_t, target = noiser(x0, eps, t)
        if cond_dropout > 0:
            drop = torch.rand(x0.shape[0], generator=g).to(x0.device) < cond_dropout
            parts = tuple(_drop(p, n, drop) for p, n in zip(parts, null_cond, strict=True))
        loss = (model(x_t, t, *parts) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1])
    model.eval()
    return losses
