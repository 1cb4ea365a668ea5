"""Triplet margin loss (Weinberger & Saul 2009; Schroff et al., "FaceNet", 2015; Hermans et al. 2017),
with PML ``TripletMarginLoss`` conventions.

For a triplet ``(a, p, n)`` with distances ``d``: ``l = [d_ap - d_an + margin]_+``; for similarities
``[s_an - s_ap + margin]_+``. ``smooth=True`` uses ``softplus(d_ap - d_an + margin)`` (Hermans et al.'s
soft margin, with ``margin=0``); ``swap=True`` replaces ``d_an`` by ``min(d_an, d_pn)`` (Balntas et al.
2016). Elements: triplets. Defaults follow PML: ``margin=0.05``, Euclidean on unit vectors,
``reduction="mean_nonzero"`` (mean over active triplets, Hermans et al.'s "BA≠0").

Without a miner every triplet (all positives x all negatives per anchor) is used, computed in
O(B*M) memory by sorting each anchor's negatives once: for a positive with threshold
``t = margin + d_ap`` the sum over negatives is ``c * t - sum of the c negatives below t`` (exact value
and gradient), never O(B^3) as PML's enumeration. Mined *pairs* are used the same way (all triplets
sharing an anchor, PML's conversion); mined *triplets* are used as given (duplicates count).
``smooth`` and ``swap`` need explicit triplets (a triplet miner, e.g. ``miner="batch-hard"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairlab.miners.base import distance_like, rowwise
from pairlab.objectives.margin import MarginObjective
from pairlab.registry import register


@register("objectives", "triplet-margin", input="labels", supervised=True, paper="Schroff et al. 2015")
class TripletMarginLoss(MarginObjective):
    """``[d_ap - d_an + margin]_+`` over all (or mined) triplets.

    Call: ``loss(embeddings [B, D], labels [B], indices_tuple=None, ref_emb=None, ref_labels=None,
    ref_self_offset=None)`` (see :mod:`pairlab.objectives.margin`); multi-view ``z [B, K, D]`` is passed
    as ``loss(z.flatten(0, 1), labels.repeat_interleave(K))``.

    Args:
        margin: default 0.05 (PML); FaceNet uses 0.2 on unit vectors.
        smooth: soft-margin ``softplus`` instead of the hinge (needs explicit triplets).
        swap: distance swap (needs explicit triplets).
        metric: ``"euclidean"`` (default), ``"squared_euclidean"``, ``"cosine"``, ``"dot"``.
        reduction: ``"mean_nonzero"`` (default), ``"mean"``, ``"sum"``; elements are triplets.
        miner: optional miner name/instance, e.g. ``"batch-hard"`` (Hermans et al.).

    Examples:
        >>> loss_fn = TripletMarginLoss(margin=0.2, miner="batch-hard")
        >>> loss = loss_fn(torch.randn(32, 64), torch.arange(8).repeat_interleave(4))
    """

    def __init__(self, margin: float = 0.05, smooth: bool = False, swap: bool = False,
                 metric: str = "euclidean", reduction: str = "mean_nonzero", **kw):
        super().__init__(metric=metric, reduction=reduction, **kw)
        self.margin = float(margin)
        self.smooth, self.swap = bool(smooth), bool(swap)

    def forward(self, embeddings, labels=None, indices_tuple=None, *, ref_emb=None, ref_labels=None,
                ref_self_offset=None) -> torch.Tensor:
        batch, d, mined = self._setup(embeddings, labels, indices_tuple, ref_emb, ref_labels, ref_self_offset)
        if mined is not None and mined.is_triplets:
            return self._explicit(batch, d, mined)
        if self.smooth or self.swap:
            raise ValueError("smooth=True and swap=True need explicit triplets: pass a triplet miner "
                             "(e.g. miner='batch-hard') or indices_tuple=(a, p, n)")
        pos, neg = self._pair_masks(batch, mined)
        return self._all_triplets(d, pos, neg)

    def _explicit(self, batch, d: torch.Tensor, mined) -> torch.Tensor:
        a, p, n = mined.a1, mined.p, mined.n
        if a.numel() == 0:
            self._no_positive("triplet")
        d_ap, d_an = d[a, p], d[a, n]
        if self.swap:
            d_pn = distance_like(rowwise(batch.y[p], batch.y[n], self.metric, self.normalize_embeddings), self.metric)
            d_an = torch.minimum(d_an, d_pn)
        v = d_ap - d_an + self.margin
        loss = F.softplus(v) if self.smooth else torch.relu(v)
        self.last_stats = {"triplets": float(loss.numel()), "triplets_nonzero": float((loss > 0).sum())}
        return self._reduce(loss, d)

    def _all_triplets(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        n_pos, n_neg = pos.sum(dim=1), neg.sum(dim=1)
        total = int((n_pos * n_neg).sum())
        if total == 0:
            self._no_positive("triplet (anchor with a positive and a negative)")
            self.last_stats = {"triplets": 0.0, "triplets_nonzero": 0.0}
            return d.sum() * 0.0
        inf = torch.full_like(d, float("inf"))
        sorted_n, _ = torch.sort(torch.where(neg, d, inf), dim=1)
        finite = torch.where(torch.isfinite(sorted_n), sorted_n, torch.zeros_like(sorted_n))
        csum = torch.cat([torch.zeros_like(d[:, :1]), torch.cumsum(finite, dim=1)], dim=1)
        t = d + self.margin  # threshold per (anchor, positive)
        c = torch.searchsorted(sorted_n.detach().contiguous(), t.detach().contiguous(), right=False)
        per_pair = c.to(d.dtype) * t - csum.gather(1, c)  # sum_n [t - d_an]_+ over the anchor's negatives
        per_pair = torch.where(pos, per_pair, torch.zeros_like(per_pair))
        active = int(torch.where(pos, c, torch.zeros_like(c)).sum())
        self.last_stats = {"triplets": float(total), "triplets_nonzero": float(active)}
        s = per_pair.sum()
        if self.reduction == "sum":
            return s
        if self.reduction == "mean":
            return s / total
        return s / active if active else s * 0.0
