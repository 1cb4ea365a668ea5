"""GroCo: group ordering constraints with a differentiable sorting network.

Paper: Shvetsova, Petersen, Kukleva, Schiele, Kuehne, "Learning by Sorting: Self-supervised Learning with
Group Ordering Constraints", ICCV 2023 (arXiv 2301.02009). Official code: ``ninatu/learning_by_sorting``
(``losses/groco.py``), sorting from the ``diffsort`` package (re-implemented in :mod:`pairlab.sorting`).

Formula, for every anchor view ``a`` (loss averaged over the ``K`` anchor views)::

    P_i  = sort_asc([cos(x_i^a, sg(x_i^p)) for p in the first n_pos views, p != a])     # positives
    N_i  = sort_asc(topk_j(cos(x_i^a, sg(x_j^a)), k=topk_neg)), j != i                  # same-view negatives
    Pi_i = DiffSort([N_i ; P_i])                       # [n, n], Pi[e, r] = P(element e at rank r)
    p_e  = sum_{r >= topk_neg} Pi[e, r]                # probability of landing in the positive (top) group
    L_a  = 1/2 [BCE(clip(p, 0, 1), t) + BCE(clip(1 - p', 0, 1), 1 - t)],  t_e = 1{e >= topk_neg}

with ``p'`` the sum over the negative ranks and BCE averaged over ``B * n``. Only the group order matters.

Defaults (official): ``steepness=1``, ``topk_neg=10``, ``stop_grad=True`` (``sg`` above), odd-even network
with the Cauchy relaxation, cosine similarity. With ``n_pos_views < K`` (multi-crop), only the first
``n_pos_views`` views serve as positives; anchors among the other views get ``n_pos_views`` positives.
With steepness 1 the relaxation is soft: a perfectly ordered input still gives BCE ~ 0.18; the loss is
monotone in ordering quality but never near 0.

Deviations: none in the value. BCE is ``torch.nn.functional.binary_cross_entropy`` (log clamped at -100, as
in the official ``nn.BCELoss``). On several ranks the negatives are gathered (with gradient unless
``stop_grad``), as in the official ``GatherLayer`` path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pairlab import distributed
from pairlab._validate import check_choice, check_embeddings, check_positive
from pairlab.registry import register
from pairlab.scores import normalize
from pairlab.sorting import DISTRIBUTIONS, NETWORKS, diff_sort


def group_order_bce(sims: torch.Tensor, n_neg: int, **sort_kw) -> torch.Tensor:
    """GroCo's sorting loss for pre-ordered rows ``sims = [negatives ascending ; positives ascending]``.

    ``sims: [B, n]``; the first ``n_neg`` columns are negatives. Returns the scalar BCE (mean over ``B * n``).
    """
    _, perm = diff_sort(sims, **sort_kw)
    p_pos = perm[..., n_neg:].sum(-1).clamp(0, 1)
    p_neg = perm[..., :n_neg].sum(-1).clamp(0, 1)
    target = torch.zeros_like(p_pos)
    target[..., n_neg:] = 1.0
    return 0.5 * (F.binary_cross_entropy(p_pos, target) + F.binary_cross_entropy(p_neg, 1.0 - target))


@register(
    "objectives", "groco", input="views", paper="Shvetsova et al. 2023 (GroCo, ICCV)",
    summary="Group ordering of positives above hard negatives via a differentiable sorting network",
)
class GroCo(nn.Module):
    """GroCo loss on ``z: [B, K, D]`` (K >= 2 views; sample-major).

    Args:
        steepness: relaxation steepness (official 1).
        topk_neg: number of hardest same-view negatives per anchor (official 10); needs ``B - 1 >= topk_neg``.
        stop_grad: detach positives and negatives (the anchor keeps its gradient), official True.
        n_pos_views: the first ``n_pos_views`` views are positives (default all ``K``; multi-crop: 2).
        network: ``"odd_even"`` (official) or ``"bitonic"``.
        distribution: ``"cauchy"`` (official), ``"logistic"``, ``"gaussian"``, ``"reciprocal"``.

    ``last_stats`` holds the official diagnostics of the first anchor view: ``pos_max``, ``pos_min``,
    ``neg_max``, ``neg_min`` (batch means) and ``pos_neg_dist = pos_min - neg_max``.

    Examples:
        >>> loss = GroCo(topk_neg=4)(torch.randn(16, 2, 32))
    """

    def __init__(
        self,
        steepness: float = 1.0,
        topk_neg: int = 10,
        stop_grad: bool = True,
        n_pos_views: int | None = None,
        network: str = "odd_even",
        distribution: str = "cauchy",
    ):
        super().__init__()
        self.steepness = check_positive("steepness", steepness)
        if not isinstance(topk_neg, int) or topk_neg < 1:
            raise ValueError(f"topk_neg must be an integer >= 1, got {topk_neg!r}")
        if n_pos_views is not None and (not isinstance(n_pos_views, int) or n_pos_views < 2):
            raise ValueError(f"n_pos_views must be an integer >= 2 or None, got {n_pos_views!r}")
        self.topk_neg = topk_neg
        self.stop_grad = bool(stop_grad)
        self.n_pos_views = n_pos_views
        self.network = check_choice("network", network, NETWORKS)
        self.distribution = check_choice("distribution", distribution, DISTRIBUTIONS)
        self.last_stats: dict[str, float] = {}

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z: [B, K, D]``; ``labels`` is accepted for the uniform interface and ignored (self-supervised)."""
        check_embeddings("z", z, 3, "[B, K, D]")
        b, k, _ = z.shape
        n_pos = k if self.n_pos_views is None else self.n_pos_views
        if k < 2 or n_pos > k:
            raise ValueError(f"z needs K >= 2 views and K >= n_pos_views={n_pos}, got shape {tuple(z.shape)}")
        world_b = b * distributed.world_size()
        if world_b - 1 < self.topk_neg:
            raise ValueError(
                f"GroCo needs at least topk_neg + 1 = {self.topk_neg + 1} samples in the (global) batch, got {world_b}"
            )
        x = normalize(z)  # [B, K, D], float32/64
        offset = distributed.rank() * b
        total = x.new_zeros(())
        sort_kw = dict(network=self.network, steepness=self.steepness, distribution=self.distribution)
        for a in range(k):
            anchor = x[:, a]
            pos = torch.stack([x[:, p] for p in range(n_pos) if p != a], dim=1)  # [B, P, D]
            negs = distributed.gather_with_grad(anchor)
            if self.stop_grad:
                pos, negs = pos.detach(), negs.detach()
            pos_s = torch.einsum("bd,bpd->bp", anchor, pos).sort(dim=1).values
            neg_s = anchor @ negs.T
            self_mask = torch.zeros_like(neg_s, dtype=torch.bool)
            self_mask[torch.arange(b), torch.arange(b) + offset] = True
            neg_s = neg_s.masked_fill(self_mask, float("-inf"))
            neg_s = neg_s.topk(self.topk_neg, dim=1).values.flip(1)
            total = total + group_order_bce(torch.cat([neg_s, pos_s], dim=1), self.topk_neg, **sort_kw)
            if a == 0:
                with torch.no_grad():
                    st = {
                        "pos_max": float(pos_s[:, -1].mean()),
                        "pos_min": float(pos_s[:, 0].mean()),
                        "neg_max": float(neg_s[:, -1].mean()),
                        "neg_min": float(neg_s[:, 0].mean()),
                    }
                    st["pos_neg_dist"] = st["pos_min"] - st["neg_max"]
                    self.last_stats = st
        return total / k

    def extra_repr(self) -> str:
        return (
            f"steepness={self.steepness}, topk_neg={self.topk_neg}, stop_grad={self.stop_grad}, "
            f"n_pos_views={self.n_pos_views}, network={self.network!r}, distribution={self.distribution!r}"
        )
