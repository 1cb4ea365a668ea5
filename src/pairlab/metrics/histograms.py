"""Positive / negative score distributions of an embedding.

For two views ``a, b: [N, D]`` of the same ``N`` samples: positive scores are ``cos(a_i, b_i)``; negative
scores are ``cos(a_i, b_j)`` for ``i != j`` (all of them, or a deterministic subsample of ``max_negatives``).
The summary gives the means, standard deviations, the gap ``mean_pos - mean_neg`` and histogram counts on
fixed bins over ``[-1, 1]``, so runs are comparable.
"""

from __future__ import annotations

import torch

from pairlab._validate import check_embeddings, check_same_batch, check_same_dim
from pairlab.registry import register
from pairlab.scores import normalize


def pos_neg_scores(
    a: torch.Tensor, b: torch.Tensor, max_negatives: int | None = 100_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pos [N], neg [M])`` cosine scores; ``neg`` holds every off-diagonal pair, or ``max_negatives`` of them."""
    check_embeddings("a", a, 2, "[N, D]")
    check_embeddings("b", b, 2, "[N, D]")
    check_same_batch(("a", "b"), (a, b))
    check_same_dim(("a", "b"), (a, b))
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"a and b need at least 2 rows (for negatives), got shape {tuple(a.shape)}")
    s = normalize(a) @ normalize(b).T
    pos = s.diagonal().clone()
    neg = s[~torch.eye(n, dtype=torch.bool)]
    if max_negatives is not None and neg.numel() > max_negatives:
        g = torch.Generator().manual_seed(0)
        neg = neg[torch.randperm(neg.numel(), generator=g)[:max_negatives]]
    return pos, neg


@register("metrics", "pos_neg_hist", summary="positive vs negative cosine-score histograms")
def score_histograms(a: torch.Tensor, b: torch.Tensor, bins: int = 40) -> dict:
    """Summary dict: ``pos_mean, pos_std, neg_mean, neg_std, gap, bin_edges, pos_hist, neg_hist``."""
    pos, neg = pos_neg_scores(a, b)
    edges = torch.linspace(-1.0, 1.0, bins + 1, dtype=torch.float64)
    ph = torch.histc(pos.double().clamp(-1, 1), bins=bins, min=-1.0, max=1.0)
    nh = torch.histc(neg.double().clamp(-1, 1), bins=bins, min=-1.0, max=1.0)
    return {
        "pos_mean": float(pos.mean()),
        "pos_std": float(pos.std()) if pos.numel() > 1 else 0.0,
        "neg_mean": float(neg.mean()),
        "neg_std": float(neg.std()) if neg.numel() > 1 else 0.0,
        "gap": float(pos.mean() - neg.mean()),
        "bin_edges": edges.tolist(),
        "pos_hist": [int(v) for v in ph.tolist()],
        "neg_hist": [int(v) for v in nh.tolist()],
    }
