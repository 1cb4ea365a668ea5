"""Geometry of an embedding: alignment, uniformity (Wang & Isola 2020) and effective rank (Roy & Vetterli 2007).

- ``alignment(x, y, alpha=2) = E_i ||f(x_i) - f(y_i)||_2^alpha`` over positive pairs, with ``f`` the
  L2-normalised embedding (Wang & Isola, ICML 2020, Eq. 4; lower is better).
- ``uniformity(x, t=2) = log E_{i<j} exp(-t ||f(x_i) - f(x_j)||^2)`` over distinct pairs (Eq. 5, their
  ``torch.pdist`` implementation); computed as ``logsumexp - log(#pairs)``, never ``log(mean(exp))``.
- ``effective_rank(x) = exp(H(p))``, ``p_k = sigma_k / sum sigma``, ``H`` the Shannon entropy of the
  normalised singular values of the feature matrix (Roy & Vetterli, EUSIPCO 2007). The matrix is used as is
  (not centred), like RankMe (Garrido et al. 2023); ``center=True`` subtracts the mean first.
"""

from __future__ import annotations

import math

import torch

from pairlab._validate import check_embeddings, check_positive, check_same_batch, check_same_dim
from pairlab.registry import register
from pairlab.scores import normalize


@register("metrics", "alignment", summary="E||f(x)-f(y)||^alpha over positive pairs", paper="Wang & Isola 2020")
def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """``x, y: [N, D]``: row ``i`` of ``x`` and ``y`` are a positive pair (normalised inside)."""
    check_embeddings("x", x, 2, "[N, D]")
    check_embeddings("y", y, 2, "[N, D]")
    check_same_batch(("x", "y"), (x, y))
    check_same_dim(("x", "y"), (x, y))
    check_positive("alpha", alpha)
    return float((normalize(x) - normalize(y)).norm(dim=1).pow(alpha).mean())


@register("metrics", "uniformity", summary="log E exp(-t||f(x)-f(y)||^2), distinct pairs", paper="Wang & Isola 2020")
def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """``x: [N, D]`` with ``N >= 2`` (normalised inside)."""
    check_embeddings("x", x, 2, "[N, D]")
    check_positive("t", t)
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 rows for uniformity, got shape {tuple(x.shape)}")
    d2 = torch.pdist(normalize(x)).square()
    return float(torch.logsumexp(-t * d2, dim=0) - math.log(d2.numel()))


@register("metrics", "effective_rank", summary="exp(entropy of normalised singular values)",
          paper="Roy & Vetterli 2007")
def effective_rank(x: torch.Tensor, center: bool = False) -> float:
    """``x: [N, D]`` feature matrix; between 1 and ``min(N, D)`` (0 for an all-zero matrix)."""
    check_embeddings("x", x, 2, "[N, D]")
    x = x.double()
    if center:
        x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
