"""Multi-similarity miner (Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep
Metric Learning", CVPR 2019, Eq. 5-6).

With similarities ``S`` (default cosine) and ``epsilon`` (the paper's margin, 0.1):

- a negative pair ``(i, k)`` is kept if ``S_ik > min_{y_j = y_i} S_ij - epsilon``;
- a positive pair ``(i, j)`` is kept if ``S_ij < max_{y_k != y_i} S_ik + epsilon``.

Returns pairs ``(a1, p, a2, n)``; equals PML ``MultiSimilarityMiner``. For distances the same rule is
applied to ``-d`` (hard = close negatives, far positives).
"""

from __future__ import annotations

import torch

from pairlab._validate import check_positive
from pairlab.miners.base import Mined, Miner
from pairlab.registry import register


@register("miners", "multi-similarity", output="pairs", paper="Wang et al. 2019")
class MultiSimilarityMiner(Miner):
    """Keep negatives closer than the farthest positive (+ eps) and positives farther than the
    closest negative (- eps).

    Args:
        epsilon: the mining margin (paper: 0.1).
        metric: ``"cosine"`` (default), ``"dot"``, ``"euclidean"``, ``"squared_euclidean"``.
    """

    def __init__(self, epsilon: float = 0.1, metric: str = "cosine", normalize_embeddings: bool = True):
        super().__init__(metric, normalize_embeddings)
        if epsilon != 0:
            check_positive("epsilon", epsilon)
        self.epsilon = float(epsilon)

    def mine(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> Mined:
        inf = torch.full_like(d, float("inf"))
        farthest_pos = torch.where(pos, d, -inf).max(dim=1, keepdim=True).values  # -inf if none
        closest_neg = torch.where(neg, d, inf).min(dim=1, keepdim=True).values  # +inf if none
        keep_neg = neg & (d - self.epsilon < farthest_pos)
        keep_pos = pos & (d + self.epsilon > closest_neg)
        a1, p = torch.nonzero(keep_pos, as_tuple=True)
        a2, n = torch.nonzero(keep_neg, as_tuple=True)
        return Mined(a1, p, a2, n)
