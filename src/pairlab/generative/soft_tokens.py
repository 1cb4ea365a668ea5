"""Soft tokens (SoftREPA): a few learnable conditioning tokens prepended to any condition embedding.

Paper: Lee, Cha, Kim, Ye, "Aligning Text to Image in Diffusion Models is Easier Than You Think" (2025).
Official code (``transformer.py``): ``dc_tokens [n_layers, n_tokens, dim]`` initialised ``N(0, 0.02)`` and, with
``use_dc_t``, a timestep embedding ``Embedding(100, dim)`` indexed by ``t // 10`` (t in [0, 1000)) that is
*added to every token*; the result is concatenated in front of the text tokens (SD3; after the BOS token for
SD1.5/SDXL). Only these parameters are trained, with the error-contrast loss
(:class:`pairlab.objectives.error_contrast.ErrorContrast`) on a ``B x B`` per-pair error grid.

Here: ``tokens [n_tokens, dim]`` (+ ``Embedding(n_buckets, dim)`` indexed by ``floor(t * n_buckets)`` for
``t in [0, 1]``), inserted at position ``insert_at`` (0: prepend as in SD3; 1: after the first token as in
SD1.5) of a ``[N, L, D]`` condition, extending an optional ``[N, L]`` key mask with ``True``.
Deviation: one token set shared by every layer of the model (the official SD3 code uses a set per joint block for
the first 5 blocks); a model that takes per-layer conditions can hold one :class:`SoftTokens` per layer.

:func:`train_soft_tokens` trains only the tokens: AdamW (lr 1e-3, betas (0.9, 0.999), wd 1e-4) as in the
official code, at a constant learning rate (the official ``CosineAnnealingWarmRestarts(T_0=10)`` steps every
2500 iterations, i.e. it is constant over a short run), one ``t ~ U[t_min, t_max]`` and one noise per grid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from pairlab._validate import check_embeddings, check_positive, check_tensor
from pairlab.generative.pair_errors import Noiser, pair_errors


class SoftTokens(nn.Module):
    """Learnable tokens inserted into a condition sequence ``[N, L, D] -> [N, n_tokens + L, D]``.

    Args:
        n_tokens: number of soft tokens (official 4).
        dim: token width ``D`` (the condition embedding width).
        n_buckets: if set, a per-timestep-bucket vector (``Embedding(n_buckets, dim)``, bucket
            ``floor(t * n_buckets)``) is added to every token (official ``use_dc_t`` with 100 buckets).
        init_std: std of the ``N(0, init_std)`` initialisation (official 0.02).
        init: optional ``[n_tokens, dim]`` or ``[dim]`` initial value (SD1.5: the null-prompt embedding).
        insert_at: position in the sequence where the tokens go (0 = prepend).
        t_init_std: std of the timestep vectors' initialisation (default ``init_std`` as in the official code);
            ``0`` starts them at zero, so tokens built with ``init`` equal ``init`` at every timestep at step 0.

    Examples:
        >>> soft = SoftTokens(4, 384, n_buckets=10)
        >>> tokens, mask = soft(torch.randn(8, 7, 384), t=torch.rand(8), mask=torch.ones(8, 7, dtype=torch.bool))
    """

    def __init__(
        self,
        n_tokens: int = 4,
        dim: int = 384,
        n_buckets: int | None = None,
        init_std: float = 0.02,
        init: torch.Tensor | None = None,
        insert_at: int = 0,
        t_init_std: float | None = None,
    ):
        super().__init__()
        for name, v in (("n_tokens", n_tokens), ("dim", dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if n_buckets is not None and (not isinstance(n_buckets, int) or n_buckets < 1):
            raise ValueError(f"n_buckets must be None or an int >= 1, got {n_buckets!r}")
        if not isinstance(insert_at, int) or insert_at < 0:
            raise ValueError(f"insert_at must be an int >= 0, got {insert_at!r}")
        init_std = check_positive("init_std", init_std)
        if t_init_std is None:
            t_init_std = init_std
        elif not isinstance(t_init_std, (int, float)) or not 0.0 <= float(t_init_std) < float("inf"):
            raise ValueError(f"t_init_std must be None or a finite number >= 0, got {t_init_std!r}")
        self.n_tokens, self.dim, self.n_buckets, self.insert_at = n_tokens, dim, n_buckets, insert_at
        self.tokens = nn.Parameter(torch.randn(n_tokens, dim) * init_std)
        if init is not None:
            check_tensor("init", init)
            if tuple(init.shape) not in ((n_tokens, dim), (dim,)):
                raise ValueError(f"init must have shape [{n_tokens}, {dim}] or [{dim}], got {tuple(init.shape)}")
            with torch.no_grad():
                self.tokens.copy_(init.detach().to(self.tokens.dtype).expand(n_tokens, dim))
        self.t_tokens = None
        if n_buckets is not None:
            self.t_tokens = nn.Embedding(n_buckets, dim)
            if t_init_std > 0:
                nn.init.normal_(self.t_tokens.weight, 0.0, float(t_init_std))
            else:
                nn.init.zeros_(self.t_tokens.weight)

    def bucket(self, t: torch.Tensor) -> torch.Tensor:
        """Bucket index ``floor(t * n_buckets)`` clamped to ``[0, n_buckets - 1]`` for ``t in [0, 1]``."""
        assert self.n_buckets is not None
        return (t.detach().float() * self.n_buckets).floor().long().clamp(0, self.n_buckets - 1)

    def token_block(self, n: int, t: torch.Tensor | None = None) -> torch.Tensor:
        """The ``[n, n_tokens, dim]`` tokens for a batch of ``n`` (with their timestep vectors added)."""
        tok = self.tokens.unsqueeze(0).expand(n, -1, -1)
        if self.t_tokens is not None:
            if t is None:
                raise ValueError("t is required: these soft tokens have timestep buckets (n_buckets is set)")
            t = torch.as_tensor(t, device=self.tokens.device).reshape(-1).expand(n)
            tok = tok + self.t_tokens(self.bucket(t)).unsqueeze(1)
        return tok

    def forward(
        self, cond: torch.Tensor, t: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Insert the tokens into ``cond [N, L, D]``; returns ``cond'`` or ``(cond', mask')`` if ``mask [N, L]``."""
        check_embeddings("cond", cond, 3, "[N, L, D]")
        n, length, d = cond.shape
        if d != self.dim:
            raise ValueError(f"cond must have width D={self.dim} like the soft tokens, got shape {tuple(cond.shape)}")
        if self.insert_at > length:
            raise ValueError(f"insert_at={self.insert_at} is past the condition length L={length}")
        tok = self.token_block(n, t).to(cond.dtype)
        k = self.insert_at
        out = torch.cat([cond[:, :k], tok, cond[:, k:]], dim=1)
        if mask is None:
            return out
        check_tensor("mask", mask)
        if mask.dtype != torch.bool or tuple(mask.shape) != (n, length):
            raise ValueError(
                f"mask must be a bool tensor of shape [{n}, {length}], got {mask.dtype} {tuple(mask.shape)}"
            )
        ones = torch.ones(n, self.n_tokens, dtype=torch.bool, device=mask.device)
        return out, torch.cat([mask[:, :k], ones, mask[:, k:]], dim=1)


class TokenConditioned(nn.Module):
    """Wrap ``model(x_t, t, cond [N, L, D], mask=None)`` so its condition gets the soft tokens.

    ``TokenConditioned(model, soft)(x_t, t, cond, mask)`` calls ``model(x_t, t, cond', mask')``; the wrapped
    model's own parameters are frozen (``requires_grad_(False)``) so only the soft tokens train.
    """

    def __init__(self, model: nn.Module, soft: SoftTokens, freeze: bool = True):
        super().__init__()
        self.model, self.soft = model, soft
        if freeze:
            self.model.requires_grad_(False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None):
        if mask is None:
            return self.model(x_t, t, self.soft(cond, t))
        c, m = self.soft(cond, t, mask)
        return self.model(x_t, t, c, m)


def train_soft_tokens(
    model: nn.Module,
    soft: SoftTokens,
    batches: Iterator[tuple[torch.Tensor, Sequence[torch.Tensor]]],
    objective: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    *,
    noiser: Noiser | None = None,
    t_range: tuple[float, float] = (0.0, 1.0),
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    chunk_size: int = 1024,
    grids_per_step: int = 1,
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train only ``soft`` on the error-contrast ``objective`` of ``B x B`` grids; returns the loss per step.

    ``batches`` yields ``(x0 [B, ...], cond_parts)`` where ``cond_parts`` are the matching conditions of the ``B``
    samples (``(tokens [B, L, D],)`` or ``(tokens, mask [B, L])``): the grid pairs every sample with every
    condition of its batch, so the batch should hold distinct conditions. ``model`` is frozen for the run.
    ``grids_per_step`` grids (each with its own ``t`` and noise) are averaged per optimiser step, as the official
    multi-GPU run averages one grid per GPU (2 GPUs x a ``4 x 4`` grid); the returned loss is their mean.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not isinstance(grids_per_step, int) or grids_per_step < 1:
        raise ValueError(f"grids_per_step must be an int >= 1, got {grids_per_step!r}")
    lo, hi = t_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"t_range must satisfy 0 <= t_min <= t_max <= 1, got {t_range}")
    wrapped = TokenConditioned(model, soft, freeze=True)
    opt = torch.optim.AdamW(soft.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(grids_per_step):
            x0, parts = next(batches)
            t = lo + (hi - lo) * float(torch.rand((), generator=g))
            err = pair_errors(wrapped, x0, tuple(parts), t, noiser=noiser, chunk_size=chunk_size, generator=g)
            loss = objective(err) / grids_per_step
            loss.backward()
            total += float(loss.detach())
        opt.step()
        losses.append(total)
        if log is not None:
            log(step, losses[-1])
    return losses
