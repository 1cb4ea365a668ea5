"""DBPM: SimCLR with dynamic bad pair mining (memory-based down-weighting of noisy and faulty pairs).

Paper: Lan, Yan, Hong, Feng, "Towards Enhancing Time Series Contrastive Learning: A Dynamic Bad Pair Mining
Approach", ICLR 2024. Official code: ``lanxiang1017/DynamicBadPairMining_ICLR24``.

Per-sample SimCLR loss (a vector, one entry per pair ``i``; the one equation with ``reduction="none"``)::

    l_i = 1/2 [ -log(pos_i / (pos_i + neg_i^(1))) - log(pos_i / (pos_i + neg_i^(2))) ],  tau = 0.2

then ``L = mean_i w_i l_i`` with ``w_i`` from :class:`pairlab.weights.dbpm.BadPairMemory` (memory of past
losses, thresholds ``mu - beta_np sigma`` / ``mu + beta_fp sigma``, Gaussian down-weighting of flagged
pairs). Paper form by default (plain memory mean, weight in (0, 1]); ``memory_weighting="linear_epoch"`` and
``pdf_weight=True`` reproduce the official code (see the weights module).

Calling convention: ``obj(z, index=index)`` with ``z: [B, K, D]`` (K = 2 in the paper; K > 2 averages the
K anchor terms) and ``index [B]`` the dataset indices; call ``obj.set_epoch(epoch)`` at the start of every
epoch. In training mode the unweighted losses are recorded in the memory; in eval mode nothing is recorded.
"""

from __future__ import annotations

import torch

from pairlab import pairs
from pairlab._validate import check_embeddings
from pairlab.nce import nce
from pairlab.objectives.base import ContrastiveObjective
from pairlab.registry import register
from pairlab.scores import prepare
from pairlab.weights.dbpm import BadPairMemory


def per_sample_ntxent(z: torch.Tensor, scale: torch.Tensor, similarity: str = "cosine") -> torch.Tensor:
    """NT-Xent per sample: the mean over the ``K`` views of each anchor's loss, ``z: [B, K, D] -> [B]``."""
    check_embeddings("z", z, 3, "[B, K, D]")
    b, k, d = z.shape
    if k < 2:
        raise ValueError(f"z needs K >= 2 views per sample, got shape {tuple(z.shape)}")
    zf, targets, valid = pairs.view_targets(z)
    x = prepare(zf, similarity)
    res = nce((x @ x.T) * scale, targets, valid, reduction="none")
    return res.per_anchor.view(b, k).mean(dim=1)


@register(
    "objectives", "dbpm", input="views", needs=("index", "set_epoch"), auto_args=("num_samples", "max_epochs"),
    paper="Lan et al. 2024 (DBPM, ICLR)",
    summary="SimCLR with a memory of per-pair losses that down-weights noisy and faulty pairs",
)
class DBPM(ContrastiveObjective):
    """SimCLR + dynamic bad pair mining.

    Args:
        num_samples: dataset size (memory rows).
        max_epochs, warm_epochs, beta_np, beta_fp, memory_weighting, pdf_weight: see
            :class:`~pairlab.weights.dbpm.BadPairMemory` (official defaults 80, 50, 2, 3).
        temperature: ``tau`` (official 0.2).

    ``last_stats``: ``flagged`` (pairs of the batch with ``w < 1`` or ``!= 1``), ``mean_weight``.

    Examples:
        >>> loss_fn = DBPM(num_samples=1000)
        >>> loss = loss_fn(torch.randn(16, 2, 32), index=torch.arange(16))   # dataset indices of the batch
    """

    def __init__(
        self,
        num_samples: int,
        max_epochs: int = 80,
        warm_epochs: int = 50,
        beta_np: float = 2.0,
        beta_fp: float = 3.0,
        memory_weighting: str = "uniform",
        pdf_weight: bool = False,
        temperature: float = 0.2,
        similarity: str = "cosine",
        **kw,
    ):
        super().__init__(temperature, similarity, **kw)
        self.memory = BadPairMemory(num_samples, max_epochs, warm_epochs, beta_np, beta_fp, memory_weighting,
                                    pdf_weight)

    def set_epoch(self, epoch: int) -> None:
        self.memory.set_epoch(epoch)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, *, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``z: [B, K, D]``, ``index: [B]`` dataset indices (required); ``labels`` is ignored."""
        if index is None:
            raise ValueError("DBPM needs index=: the dataset indices of the batch, an integer tensor of shape [B]")
        losses = per_sample_ntxent(z, self.temperature.scale(), self.similarity)
        if self.training:
            self.memory.record(index, losses)
        w = self.memory(index, losses)
        self.last_stats = {"flagged": float((w != 1).sum()), "mean_weight": float(w.mean())}
        return (w * losses).mean()
