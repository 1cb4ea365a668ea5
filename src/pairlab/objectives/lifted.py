"""Lifted structure loss (Oh Song, Xiang, Jegelka & Savarese, "Deep Metric Learning via Lifted
Structured Feature Embedding", CVPR 2016, Eq. 4), with PML ``LiftedStructureLoss`` conventions::

    J_ij = log( sum_{k in N_i} exp(m_neg - D_ik) + sum_{l in N_j} exp(m_neg - D_jl) ) + D_ij - m_pos
    L    = 1 / (2|P|) sum_{(i,j) in P} [J_ij]_+^2

over ordered positive pairs (each unordered pair appears twice, so this equals the paper's mean over
unordered pairs). Defaults ``m_neg=1, m_pos=0``, Euclidean on unit vectors (PML). The two negative sets
are combined as ``logaddexp`` of two per-row logsumexps, O(B*M) memory instead of PML's O(P*N)
pair-indexed mask. With ``ref_emb`` the negatives of the candidate ``j`` are the *anchors* of another
class (column ``j``); without it that is the paper's set. For similarities: ``exp(s_ik - m_neg)`` and
``m_pos - s_ij``. Elements: positive pairs with at least one negative on either side.
"""

from __future__ import annotations

import torch

from pairlab.objectives.margin import MarginObjective, masked_logsumexp
from pairlab.registry import register


@register("objectives", "lifted-structure", input="labels", supervised=True, paper="Oh Song et al. 2016")
class LiftedStructureLoss(MarginObjective):
    """Smooth hinge over each positive pair against all negatives of both its ends.

    Call: ``loss(embeddings [B, D], labels [B], indices_tuple=None, ref_emb=None, ref_labels=None,
    ref_self_offset=None)`` (see :mod:`pairlab.objectives.margin`); multi-view ``z [B, K, D]`` is passed
    as ``loss(z.flatten(0, 1), labels.repeat_interleave(K))``.

    Args:
        neg_margin: default 1; pos_margin: default 0 (raw metric units).
        metric: ``"euclidean"`` (default), ``"squared_euclidean"``, ``"cosine"``, ``"dot"``.
        reduction: ``"mean"`` (default: the paper's 1/(2|P|) sum), ``"mean_nonzero"``, ``"sum"``
            (``"sum"`` is the sum of ``[J]_+^2 / 2`` over ordered pairs).
    """

    def __init__(self, neg_margin: float = 1.0, pos_margin: float = 0.0, metric: str = "euclidean",
                 reduction: str = "mean", **kw):
        super().__init__(metric=metric, reduction=reduction, **kw)
        self.neg_margin, self.pos_margin = float(neg_margin), float(pos_margin)

    def forward(self, embeddings, labels=None, indices_tuple=None, *, ref_emb=None, ref_labels=None,
                ref_self_offset=None) -> torch.Tensor:
        batch, d, mined = self._setup(embeddings, labels, indices_tuple, ref_emb, ref_labels, ref_self_offset)
        pos, neg = self._pair_masks(batch, mined)
        sg = self._sign()
        x = sg * self.neg_margin - d
        lse_row, has_row = masked_logsumexp(x, neg, dim=1)  # negatives of anchor i   [N]
        lse_col, has_col = masked_logsumexp(x, neg, dim=0)  # negatives of candidate j [M]
        li = torch.where(has_row, lse_row, torch.zeros_like(lse_row))[:, None]
        lj = torch.where(has_col, lse_col, torch.zeros_like(lse_col))[None, :]
        hi, hj = has_row[:, None], has_col[None, :]
        both = torch.logaddexp(li.expand_as(d), lj.expand_as(d))
        lse = torch.where(hi & hj, both, torch.where(hi, li.expand_as(d), lj.expand_as(d)))
        ok = pos & (hi | hj)
        if not bool(pos.any()):
            self._no_positive("positive pair")
        j = lse + d - sg * self.pos_margin
        per_pair = torch.relu(j[ok]) ** 2 / 2
        self.last_stats = {"pos_pairs": float(pos.sum()), "pos_pairs_used": float(ok.sum()),
                           "neg_pairs": float(neg.sum())}
        return self._reduce(per_pair, d)
