"""DCL: decoupled contrastive loss.

Paper: Yeh et al., "Decoupled Contrastive Learning", ECCV 2022.
Formula (two views, ``2N`` anchors)::

    loss_i = -s_{i,pos(i)} + log sum_{k != i, k != pos(i)} exp(s_ik)

i.e. NT-Xent with the positive removed from the partition (DESIGN §1: ``W = 0`` on positives).
For ``K > 2`` views every other view of the same sample is a positive and none is in the partition.
Defaults: ``tau = 0.1``, cosine. The loss can be negative (the partition excludes the positive).
"""

from __future__ import annotations

import torch

from pairlab.objectives.base import ContrastiveObjective
from pairlab.objectives.infonce import WeightFn, _views_loss
from pairlab.registry import register


@register("objectives", "dcl", input="views", paper="Yeh et al. 2022 (DCL)")
class DCL(ContrastiveObjective):
    """Decoupled contrastive loss (positives removed from the partition).

    Examples:
        >>> loss = DCL(temperature=0.1)(torch.randn(32, 2, 128))
    """

    def __init__(self, temperature: float = 0.1, similarity: str = "cosine", **kw):
        super().__init__(temperature, similarity, **kw)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        extra: torch.Tensor | None = None,
        extra_labels: torch.Tensor | None = None,
        weights: torch.Tensor | WeightFn | None = None,
    ) -> torch.Tensor:
        """``z: [B, K, D]``; with ``labels`` positives (and exclusions) follow label equality.

        ``extra``/``extra_labels`` and ``weights`` (a dense ``W`` or a weights component's callable) work as for
        :class:`~pairlab.objectives.infonce.NTXent`; positives keep ``W = 0`` in the partition whatever ``weights``
        says (that is what makes the loss decoupled).
        """
        return _views_loss(self, z, labels, "mean_log", True, extra, extra_labels, weights)
