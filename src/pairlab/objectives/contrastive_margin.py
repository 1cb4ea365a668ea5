"""Contrastive (margin) loss on pairs (Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an
Invariant Mapping", CVPR 2006), with PML ``ContrastiveLoss`` conventions.

For distances ``d``::

    L = reduce_{(i,j) positive} [d_ij - m_pos]_+^q  +  reduce_{(i,k) negative} [m_neg - d_ik]_+^q

and for similarities ``s`` the hinges flip: ``[m_pos - s_ij]_+^q`` and ``[s_ik - m_neg]_+^q``.
Defaults follow PML (``m_pos = 0``, ``m_neg = 1``, ``q = 1``, Euclidean on unit vectors,
``reduction="mean_nonzero"``, each part reduced separately then summed). Hadsell's original form is
``power=2`` with ``reduction="mean"`` (up to its constant factor 1/2). Elements: ordered pairs.
"""

from __future__ import annotations

import torch

from pairlab.objectives.margin import MarginObjective
from pairlab.registry import register


@register("objectives", "contrastive-margin", input="labels", supervised=True, paper="Hadsell et al. 2006")
class ContrastiveLoss(MarginObjective):
    """Pull positive pairs within ``pos_margin``, push negative pairs beyond ``neg_margin``.

    Call: ``loss(embeddings [B, D], labels [B], indices_tuple=None, ref_emb=None, ref_labels=None,
    ref_self_offset=None)`` (see :mod:`pairlab.objectives.margin`); multi-view ``z [B, K, D]`` is passed
    as ``loss(z.flatten(0, 1), labels.repeat_interleave(K))``.

    Args:
        pos_margin: default 0; neg_margin: default 1 (raw metric units).
        power: exponent ``q`` of the hinges (1 = PML, 2 = Hadsell et al.).
        metric: ``"euclidean"`` (default), ``"squared_euclidean"``, ``"cosine"``, ``"dot"``.
        reduction: ``"mean_nonzero"`` (default, PML), ``"mean"``, ``"sum"``; per part.
        on_no_positive: ``"raise"`` (default) or ``"zero"`` (positive part 0) without positive pairs.
        miner: optional miner name/instance (e.g. ``"pair-margin"``).

    Examples:
        >>> loss = ContrastiveLoss(neg_margin=1.0)(torch.randn(32, 64), torch.randint(0, 4, (32,)))
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0, power: int = 1,
                 metric: str = "euclidean", reduction: str = "mean_nonzero", **kw):
        super().__init__(metric=metric, reduction=reduction, **kw)
        self.pos_margin, self.neg_margin = float(pos_margin), float(neg_margin)
        if int(power) != power or power < 1:
            raise ValueError(f"power must be a positive integer, got {power}")
        self.power = int(power)

    def forward(self, embeddings, labels=None, indices_tuple=None, *, ref_emb=None, ref_labels=None,
                ref_self_offset=None) -> torch.Tensor:
        batch, d, mined = self._setup(embeddings, labels, indices_tuple, ref_emb, ref_labels, ref_self_offset)
        pos, neg = self._pair_masks(batch, mined)
        sg = self._sign()
        pos_loss = torch.relu(d[pos] - sg * self.pos_margin) ** self.power
        neg_loss = torch.relu(sg * self.neg_margin - d[neg]) ** self.power
        if pos_loss.numel() == 0:
            self._no_positive("positive pair")
        self.last_stats = {
            "pos_pairs": float(pos_loss.numel()),
            "neg_pairs": float(neg_loss.numel()),
            "pos_nonzero": float((pos_loss > 0).sum()),
            "neg_nonzero": float((neg_loss > 0).sum()),
        }
        return self._reduce(pos_loss, d) + self._reduce(neg_loss, d)
