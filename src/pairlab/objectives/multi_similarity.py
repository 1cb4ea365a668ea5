"""Multi-similarity loss (Wang, Han, Huang, Dong & Scott, "Multi-Similarity Loss with General Pair
Weighting for Deep Metric Learning", CVPR 2019, Eq. 4)::

    L_i = 1/alpha * log(1 + sum_{k in P_i} exp(-alpha (S_ik - lambda)))
        + 1/beta  * log(1 + sum_{k in N_i} exp( beta (S_ik - lambda)))

with similarities ``S`` (cosine by default), ``alpha=2, beta=50, lambda=base=0.5`` (paper and PML
defaults); both ``log(1 + sum exp)`` are logsumexps with an extra 0. Elements: anchors with at least one
positive (DESIGN §4); PML averages over every row (an anchor without positive then contributes its
negative term) and the official code skips anchors lacking a *mined* positive or negative but divides
by the batch size. The paper's full method pairs the loss with the MS miner:
``MultiSimilarityLoss(miner="multi-similarity")``. For distances the exponents are ``alpha (d - base)``
and ``beta (base - d)`` (PML's convention).
"""

from __future__ import annotations

import torch

from pairlab._validate import check_positive
from pairlab.objectives.margin import MarginObjective, log1p_sum_exp
from pairlab.registry import register


@register("objectives", "multi-similarity", input="labels", supervised=True, paper="Wang et al. 2019")
class MultiSimilarityLoss(MarginObjective):
    """Soft weighting of all positive and negative pairs of each anchor around ``base``.

    Call: ``loss(embeddings [B, D], labels [B], indices_tuple=None, ref_emb=None, ref_labels=None,
    ref_self_offset=None)`` (see :mod:`pairlab.objectives.margin`); multi-view ``z [B, K, D]`` is passed
    as ``loss(z.flatten(0, 1), labels.repeat_interleave(K))``.

    Args:
        alpha: positive scale (2); beta: negative scale (50); base: the shift ``lambda`` (0.5).
        metric: ``"cosine"`` (default), ``"dot"``, ``"euclidean"``, ``"squared_euclidean"``.
        reduction: ``"mean"`` (default, over anchors with a positive), ``"mean_nonzero"``, ``"sum"``.
        miner: e.g. ``"multi-similarity"`` for the paper's pair mining.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, metric: str = "cosine",
                 reduction: str = "mean", **kw):
        super().__init__(metric=metric, reduction=reduction, **kw)
        self.alpha = check_positive("alpha", alpha)
        self.beta = check_positive("beta", beta)
        self.base = float(base)

    def forward(self, embeddings, labels=None, indices_tuple=None, *, ref_emb=None, ref_labels=None,
                ref_self_offset=None) -> torch.Tensor:
        batch, d, mined = self._setup(embeddings, labels, indices_tuple, ref_emb, ref_labels, ref_self_offset)
        pos, neg = self._pair_masks(batch, mined)
        b = self._sign() * self.base  # lambda in distance-like units
        pos_term = log1p_sum_exp(self.alpha * (d - b), pos) / self.alpha
        neg_term = log1p_sum_exp(self.beta * (b - d), neg) / self.beta
        used = pos.any(dim=1)
        if not bool(used.any()):
            self._no_positive("anchor with a positive")
        self.last_stats = {"anchors": float(d.shape[0]), "anchors_used": float(used.sum()),
                           "pos_pairs": float(pos.sum()), "neg_pairs": float(neg.sum())}
        return self._reduce((pos_term + neg_term)[used], d)
