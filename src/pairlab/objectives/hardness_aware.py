"""Hardness-aware losses of Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021.

No official code is known; formulas from the paper as recorded in methods-representation §8.
With ``s_ij = f(x_i)^T g(x_j)`` on the unit sphere (``a = f``, ``b = g``; ``s_ii`` the positive):

Contrastive loss and its hard variant (one direction, ``a -> b``)::

    L(x_i)      = -log[ e^{s_ii/tau} / (sum_{k != i} e^{s_ik/tau} + e^{s_ii/tau}) ]
    L_hard(x_i) = same, with only the hardest negatives of anchor i in the partition

Simple loss and its hard variant (no temperature, no softmax)::

    L_simple(x_i)      = -s_ii + lam * sum_{j != i} s_ij
    L_hard_simple(x_i) = -s_ii + lam * sum_{j in hardest negatives of i} s_ij

"Hardest negatives": the paper keeps the negatives above the upper-``alpha`` quantile of the
anchor's similarities (4095 of a memory bank). pairlab selects them by ``torch.topk`` on the
(detached) similarities: ``hard_k`` negatives, or ``ceil(hard_alpha * #negatives)``; neither keeps
all (``L_hard = L``). The selection is a constant mask; gradients flow through the kept scores.

Negatives are the other rows of ``b`` plus optional ``extra: [M, D]`` columns (a memory bank or a
queue's ``.negatives()``). ``L`` and ``L_hard`` are the one equation (:func:`pairlab.nce.nce`) with
``V`` = positive + kept negatives.

Diagnostics (exact, no training): the relative penalty on negative ``j``,
``r_i(s_ij) = |dL/ds_ij| / |dL/ds_ii| = e^{s_ij/tau} / sum_{k != i} e^{s_ik/tau}`` (a Boltzmann
distribution over the negatives whose entropy grows with ``tau``), via :func:`relative_penalty` and
:func:`penalty_entropy`. As ``tau -> 0``, ``tau * L -> max(s_max - s_ii, 0)``.

Unverified (flagged): the paper's ``lam`` of the simple loss (default 1 here).
Defaults: ``tau = 0.2``; the paper sweeps 0.07 .. 1.0 (best 0.3 on CIFAR-10 with the plain loss).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pairlab._validate import (
    check_embeddings,
    check_positive,
    check_same_batch,
    check_same_dim,
)
from pairlab.nce import nce
from pairlab.objectives.base import ContrastiveObjective
from pairlab.registry import register
from pairlab.scores import prepare


def _pair_scores(a: torch.Tensor, b: torch.Tensor, extra: torch.Tensor | None, similarity: str) -> torch.Tensor:
    """Similarities ``[N, N + M]``: anchor ``a_i`` vs every row of ``b`` then ``extra``; positive on the diagonal."""
    check_embeddings("a", a, 2, "[B, D]")
    check_embeddings("b", b, 2, "[B, D]")
    check_same_batch(("a", "b"), (a, b))
    check_same_dim(("a", "b"), (a, b))
    cands = prepare(b, similarity)
    if extra is not None:
        check_embeddings("extra", extra, 2, "[M, D]")
        check_same_dim(("a", "extra"), (a, extra))
        cands = torch.cat([cands, prepare(extra, similarity).to(cands.dtype)])
    anchors = prepare(a, similarity)
    dt = torch.promote_types(anchors.dtype, cands.dtype)
    return anchors.to(dt) @ cands.to(dt).T


def _check_hard(hard_k: int | None, hard_alpha: float | None) -> None:
    if hard_k is not None and hard_alpha is not None:
        raise ValueError(f"pass hard_k or hard_alpha, not both (got hard_k={hard_k}, hard_alpha={hard_alpha})")
    if hard_k is not None and (not isinstance(hard_k, int) or hard_k < 1):
        raise ValueError(f"hard_k must be an integer >= 1, got {hard_k!r}")
    if hard_alpha is not None and not (0.0 < float(hard_alpha) <= 1.0):
        raise ValueError(f"hard_alpha must lie in (0, 1], got {hard_alpha}")


def hard_negative_mask(sim: torch.Tensor, hard_k: int | None = None, hard_alpha: float | None = None) -> torch.Tensor:
    """Bool ``[N, M]``: the positive (diagonal) plus each anchor's ``k`` most similar negatives.

    ``k = hard_k``, or ``ceil(hard_alpha * (M - 1))``, or all negatives when both are ``None``.
    """
    _check_hard(hard_k, hard_alpha)
    n, m = sim.shape
    eye = torch.zeros(n, m, dtype=torch.bool, device=sim.device)
    eye[torch.arange(n), torch.arange(n)] = True
    n_neg = m - 1
    if hard_k is None and hard_alpha is None:
        return torch.ones_like(eye)
    k = hard_k if hard_k is not None else math.ceil(float(hard_alpha) * n_neg)
    k = min(k, n_neg)
    neg = sim.detach().masked_fill(eye, float("-inf"))
    idx = neg.topk(k, dim=1).indices
    keep = torch.zeros_like(eye).scatter_(1, idx, True)
    return keep | eye


@torch.no_grad()
def relative_penalty(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """``r_i(s_ij) = softmax_{j != i}(s_ij / tau)`` as ``[N, N]`` (zero on the diagonal), cosine scores."""
    tau = check_positive("temperature", temperature)
    s = _pair_scores(a, b, None, "cosine") / tau
    eye = torch.eye(s.shape[0], s.shape[1], dtype=torch.bool, device=s.device)
    return torch.softmax(s.masked_fill(eye, float("-inf")), dim=1)


@torch.no_grad()
def penalty_entropy(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy ``[N]`` of each anchor's relative-penalty distribution over its negatives."""
    r = relative_penalty(a, b, temperature)
    return -(r * torch.where(r > 0, r.log(), torch.zeros_like(r))).sum(dim=1)


@register("objectives", "hard-contrastive", input="pair", paper="Wang & Liu 2021 (CVPR)")
class HardContrastiveLoss(ContrastiveObjective):
    """Contrastive loss whose partition keeps only the hardest negatives (``L_hard``).

    Args:
        temperature: ``tau`` (0.2; the paper's hard loss prefers larger ``tau`` than the plain one).
        hard_k: number of hardest negatives kept per anchor (paper: 4095 of a memory bank).
        hard_alpha: fraction of negatives kept instead (paper: 0.0819 on CIFAR).
            Both ``None``: all negatives, the plain contrastive loss ``L``.

    ``forward(a [B, D], b [B, D], extra=None [M, D])``: ``a_i``'s positive is ``b_i``.

    Examples:
        >>> loss = HardContrastiveLoss(0.2, hard_k=16)(torch.randn(64, 32), torch.randn(64, 32))
    """

    def __init__(
        self,
        temperature: float = 0.2,
        hard_k: int | None = None,
        hard_alpha: float | None = None,
        similarity: str = "cosine",
        **kw,
    ):
        super().__init__(temperature, similarity, **kw)
        _check_hard(hard_k, hard_alpha)
        self.hard_k, self.hard_alpha = hard_k, hard_alpha

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, extra: torch.Tensor | None = None) -> torch.Tensor:
        sim = _pair_scores(a, b, extra, self.similarity)
        if sim.shape[1] < 2:
            raise ValueError(f"need at least one negative: a has shape {tuple(a.shape)} and no extra")
        valid = hard_negative_mask(sim, self.hard_k, self.hard_alpha)
        eye = torch.zeros_like(valid)
        eye[torch.arange(sim.shape[0]), torch.arange(sim.shape[0])] = True
        return self._record(nce(sim * self.temperature.scale(), eye, valid, on_no_positive=self.on_no_positive))

    def extra_repr(self) -> str:
        return f"tau={self.temperature.value:.4g}, hard_k={self.hard_k}, hard_alpha={self.hard_alpha}"


@register("objectives", "hard-simple", input="pair", paper="Wang & Liu 2021 (CVPR)")
class SimpleLoss(nn.Module):
    """Simple loss ``-s_ii + lam * sum_j s_ij`` over all (or the hardest) negatives.

    Args:
        lam: weight of the negative sum (unverified against the paper; default 1).
        hard_k, hard_alpha: keep only the hardest negatives (the "hard simple loss"); both ``None``
            gives the plain simple loss.

    Cosine similarity; mean over anchors. ``forward(a [B, D], b [B, D], extra=None [M, D])``.
    """

    def __init__(self, lam: float = 1.0, hard_k: int | None = None, hard_alpha: float | None = None):
        super().__init__()
        self.lam = check_positive("lam", lam)
        _check_hard(hard_k, hard_alpha)
        self.hard_k, self.hard_alpha = hard_k, hard_alpha
        self.last_stats: dict[str, float] = {}

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, extra: torch.Tensor | None = None) -> torch.Tensor:
        sim = _pair_scores(a, b, extra, "cosine")
        if sim.shape[1] < 2:
            raise ValueError(f"need at least one negative: a has shape {tuple(a.shape)} and no extra")
        keep = hard_negative_mask(sim, self.hard_k, self.hard_alpha)
        n = sim.shape[0]
        pos = sim[torch.arange(n), torch.arange(n)]
        keep[torch.arange(n), torch.arange(n)] = False
        neg = torch.where(keep, sim, torch.zeros_like(sim)).sum(dim=1)
        with torch.no_grad():
            self.last_stats = {"pos_score_mean": float(pos.mean()), "neg_score_mean": float(sim[keep].mean())}
        return (-pos + self.lam * neg).mean()

    def extra_repr(self) -> str:
        return f"lam={self.lam}, hard_k={self.hard_k}, hard_alpha={self.hard_alpha}"
