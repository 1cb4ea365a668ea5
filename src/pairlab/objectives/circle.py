"""Circle loss, pair-wise labels (Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity
Optimization", CVPR 2020, Eq. 6)::

    L_i = softplus( logsumexp_{k in N_i} gamma a_n (s_k - m)  +  logsumexp_{j in P_i} -gamma a_p (s_j - (1 - m)) )
    a_p = [1 + m - s_j]_+ ,   a_n = [s_k + m]_+     (treated as constants: ``detach_weights=True``)

on cosine similarities; defaults ``m=0.4, gamma=80`` (the paper's fine-grained retrieval setting,
PML defaults; face recognition: 0.25/256). Elements: anchors with at least one positive and one
negative (as PML, whose ``AvgNonZeroReducer`` equals ``"mean"`` here since softplus > 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairlab._validate import check_positive
from pairlab.objectives.margin import MarginObjective, masked_logsumexp
from pairlab.registry import register


@register("objectives", "circle", input="labels", supervised=True, paper="Sun et al. 2020")
class CircleLoss(MarginObjective):
    """Self-paced weighting of within-class and between-class cosine similarities.

    Call: ``loss(embeddings [B, D], labels [B], indices_tuple=None, ref_emb=None, ref_labels=None,
    ref_self_offset=None)`` (see :mod:`pairlab.objectives.margin`); multi-view ``z [B, K, D]`` is passed
    as ``loss(z.flatten(0, 1), labels.repeat_interleave(K))``.

    Args:
        m: relaxation margin (0.4); gamma: scale (80).
        detach_weights: treat ``a_p, a_n`` as constants in the gradient (paper and official code).
        reduction: ``"mean"`` (default, over anchors used), ``"mean_nonzero"``, ``"sum"``.
    """

    def __init__(self, m: float = 0.4, gamma: float = 80.0, detach_weights: bool = True,
                 reduction: str = "mean", **kw):
        kw.setdefault("metric", "cosine")
        super().__init__(reduction=reduction, allowed_metrics=("cosine",), **kw)
        self.m = float(m)
        self.gamma = check_positive("gamma", gamma)
        self.detach_weights = bool(detach_weights)

    def forward(self, embeddings, labels=None, indices_tuple=None, *, ref_emb=None, ref_labels=None,
                ref_self_offset=None) -> torch.Tensor:
        batch, d, mined = self._setup(embeddings, labels, indices_tuple, ref_emb, ref_labels, ref_self_offset)
        pos, neg = self._pair_masks(batch, mined)
        s = -d
        sw = s.detach() if self.detach_weights else s
        logit_p = -self.gamma * torch.relu(1 + self.m - sw) * (s - (1 - self.m))
        logit_n = self.gamma * torch.relu(sw + self.m) * (s - self.m)
        lse_p, has_p = masked_logsumexp(logit_p, pos)
        lse_n, has_n = masked_logsumexp(logit_n, neg)
        used = has_p & has_n
        if not bool(has_p.any()):
            self._no_positive("anchor with a positive")
        zero = torch.zeros_like(lse_p)
        per_anchor = F.softplus(torch.where(used, lse_p, zero) + torch.where(used, lse_n, zero))
        self.last_stats = {"anchors": float(d.shape[0]), "anchors_used": float(used.sum()),
                           "pos_pairs": float(pos.sum()), "neg_pairs": float(neg.sum())}
        return self._reduce(per_anchor[used], d)
