"""Batch-hard miner (Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
Re-Identification", 2017).

For every anchor ``a``: the hardest positive ``p* = argmax_{p in P_a} d(a, p)`` and the hardest
negative ``n* = argmin_{n in N_a} d(a, n)``; one triplet ``(a, p*, n*)`` per anchor that has both.
Equals PML ``BatchHardMiner`` (default metric: Euclidean on L2-normalised embeddings). With a
similarity metric "hardest" means lowest positive / highest negative similarity.
"""

from __future__ import annotations

import torch

from pairlab.miners.base import Mined, Miner, masked_argmax, masked_argmin
from pairlab.registry import register


@register("miners", "batch-hard", output="triplets", paper="Hermans et al. 2017")
class BatchHardMiner(Miner):
    """Hardest positive and hardest negative per anchor -> one triplet per anchor.

    Args:
        metric: ``"euclidean"`` (default), ``"squared_euclidean"``, ``"cosine"`` or ``"dot"``.
        normalize_embeddings: L2-normalise before Euclidean distances (PML default).

    Examples:
        >>> miner = BatchHardMiner()
        >>> emb, labels = torch.randn(32, 64), torch.randint(0, 4, (32,))
        >>> mined = miner(emb, labels)
        >>> loss = TripletMarginLoss(margin=0.2)(emb, labels, mined)
    """

    def mine(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> Mined:
        p, has_p = masked_argmax(d, pos)
        n, has_n = masked_argmin(d, neg)
        a = torch.nonzero(has_p & has_n).flatten()
        return Mined.triplets(a, p[a], n[a])
