"""Pair-margin miner (PML ``PairMarginMiner``): keep the pairs that violate a margin.

Distances: positive pairs with ``d > pos_margin`` and negative pairs with ``d < neg_margin``.
Similarities: positive pairs with ``s < pos_margin`` and negative pairs with ``s > neg_margin``.
Returns pairs ``(a1, p, a2, n)``; the natural partner of :class:`~pairlab.objectives.ContrastiveLoss`.
"""

from __future__ import annotations

import torch

from pairlab.miners.base import Mined, Miner, is_similarity
from pairlab.registry import register


@register("miners", "pair-margin", output="pairs", paper="pytorch-metric-learning PairMarginMiner")
class PairMarginMiner(Miner):
    """Positive pairs beyond ``pos_margin`` and negative pairs within ``neg_margin`` (raw metric units).

    Args:
        pos_margin: default 0.2; neg_margin: default 0.8 (PML defaults, Euclidean on unit vectors).
        metric: ``"euclidean"`` (default), ``"squared_euclidean"``, ``"cosine"``, ``"dot"``.
    """

    def __init__(self, pos_margin: float = 0.2, neg_margin: float = 0.8, metric: str = "euclidean",
                 normalize_embeddings: bool = True):
        super().__init__(metric, normalize_embeddings)
        self.pos_margin, self.neg_margin = float(pos_margin), float(neg_margin)

    def mine(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> Mined:
        sign = -1.0 if is_similarity(self.metric) else 1.0  # d is distance-like: -s for similarities
        keep_pos = pos & (d > sign * self.pos_margin)
        keep_neg = neg & (d < sign * self.neg_margin)
        a1, p = torch.nonzero(keep_pos, as_tuple=True)
        a2, n = torch.nonzero(keep_neg, as_tuple=True)
        return Mined(a1, p, a2, n)
