"""Batch semi-hard miner (Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015, Sec. 3.2), in the
form of TensorFlow-Addons ``triplet_semihard_loss``.

For every positive pair ``(a, p)`` the negative is the *closest negative that is farther than the
positive*: ``n* = argmin {d(a, n) : n in N_a, d(a, n) > d(a, p)}``. If no negative is farther than the
positive, ``fallback="farthest"`` (default, TF-Addons) takes the farthest negative
``argmax_{n in N_a} d(a, n)``; ``fallback="drop"`` drops the pair. With ``margin`` set, FaceNet's
band ``d(a, p) < d(a, n) < d(a, p) + margin`` is required instead and pairs with no negative in the
band are dropped (the fallback does not apply).
"""

from __future__ import annotations

import torch

from pairlab._validate import check_choice, check_positive
from pairlab.miners.base import Mined, Miner
from pairlab.registry import register


@register("miners", "batch-semi-hard", output="triplets", paper="Schroff et al. 2015 (FaceNet)")
class BatchSemiHardMiner(Miner):
    """One triplet per positive pair with a semi-hard negative (FaceNet / TF-Addons).

    Args:
        metric: ``"euclidean"`` (default), ``"squared_euclidean"``, ``"cosine"``, ``"dot"``.
        fallback: ``"farthest"`` (TF-Addons) or ``"drop"`` for pairs without a semi-hard negative.
        margin: optional FaceNet band width (in the metric's units); ``None`` = no upper bound.
    """

    def __init__(self, metric: str = "euclidean", fallback: str = "farthest", margin: float | None = None,
                 normalize_embeddings: bool = True):
        super().__init__(metric, normalize_embeddings)
        self.fallback = check_choice("fallback", fallback, ("farthest", "drop"))
        self.margin = None if margin is None else check_positive("margin", margin)

    def mine(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> Mined:
        # O(N*M) memory: sort each anchor's negatives once, then locate every positive distance in it
        inf = torch.full_like(d, float("inf"))
        sorted_d, order = torch.sort(torch.where(neg, d, inf), dim=1)
        n_neg = neg.sum(dim=1, keepdim=True)  # [N, 1]
        first = torch.searchsorted(sorted_d, d.contiguous(), right=True)  # first negative with d_an > d_ap
        ok = first < n_neg
        pick = first.clamp(max=d.shape[1] - 1)
        if self.margin is not None:
            ok = ok & (sorted_d.gather(1, pick) < d + self.margin)
        elif self.fallback == "farthest":
            pick = torch.where(ok, pick, (n_neg - 1).clamp_min(0).expand_as(pick))
            ok = (n_neg > 0).expand_as(ok)
        n_mat = order.gather(1, pick)
        a, p = torch.nonzero(pos & ok, as_tuple=True)
        return Mined.triplets(a, p, n_mat[a, p])
