"""Distance-weighted sampling (Wu, Manmatha, Smola & Krahenbuhl, "Sampling Matters in Deep Embedding
Learning", ICCV 2017, Sec. 4).

On the unit sphere in ``n`` dimensions pairwise distances follow
``q(d) ∝ d^(n-2) (1 - d^2/4)^((n-3)/2)``; negatives are sampled with weight ``q(d)^-1`` so that all
distances are equally represented. As in the paper, ``d`` is clipped below at ``cutoff`` (0.5, bounds
the variance) and negatives at ``d >= nonzero_loss_cutoff`` (1.4, they would give zero loss) get weight
0. Weights are normalised per anchor in log space (a softmax over log-weights, no ``log(x+eps)``).
For every positive pair ``(a, p)`` one negative is drawn. If every negative of an anchor is beyond
``nonzero_loss_cutoff`` the negative is drawn uniformly, as the official MXNet code does (PML drops
such anchors instead). Metric: Euclidean on L2-normalised embeddings (required by the formula).
"""

from __future__ import annotations

import torch

from pairlab._validate import check_positive
from pairlab.miners.base import Mined, Miner
from pairlab.registry import register


@register("miners", "distance-weighted", output="triplets", paper="Wu et al. 2017", stochastic=True)
class DistanceWeightedMiner(Miner):
    """Sample one negative per positive pair with probability ``∝ 1/q(d)``.

    Args:
        cutoff: lower clip of the distance (paper: 0.5).
        nonzero_loss_cutoff: negatives at or beyond this distance are not sampled (paper: 1.4).
        seed: seed of the miner's own ``torch.Generator`` (``None``: the global RNG).
    """

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4, seed: int | None = None):
        super().__init__("euclidean", True)
        self.cutoff = check_positive("cutoff", cutoff)
        self.nonzero_loss_cutoff = check_positive("nonzero_loss_cutoff", nonzero_loss_cutoff)
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        self._dim = 0

    def forward(self, embeddings, labels, ref_emb=None, ref_labels=None, ref_self_offset=None) -> Mined:
        self._dim = int(embeddings.shape[-1]) if isinstance(embeddings, torch.Tensor) and embeddings.ndim else 0
        return super().forward(embeddings, labels, ref_emb, ref_labels, ref_self_offset)

    def log_weights(self, d: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Unnormalised ``log q(d)^-1`` on sampleable negatives, ``-inf`` elsewhere."""
        n = float(self._dim)
        dc = d.clamp(min=self.cutoff, max=2.0)
        one_minus = (1.0 - 0.25 * dc * dc).clamp_min(torch.finfo(dc.dtype).tiny)
        logw = (2.0 - n) * torch.log(dc) - ((n - 3.0) / 2.0) * torch.log(one_minus)
        keep = neg & (d < self.nonzero_loss_cutoff)
        return torch.where(keep, logw, torch.full_like(logw, float("-inf")))

    def mine(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> Mined:
        logw = self.log_weights(d, neg)
        none_left = ~torch.isfinite(logw).any(dim=1, keepdim=True)
        uniform = torch.where(neg, torch.zeros_like(d), torch.full_like(d, float("-inf")))
        logw = torch.where(none_left, uniform, logw)
        has_neg = neg.any(dim=1)
        a, p = torch.nonzero(pos & has_neg[:, None], as_tuple=True)
        if a.numel() == 0:
            return Mined.triplets(a, p, a.clone())
        lw = logw[has_neg]
        probs = (lw - torch.logsumexp(lw, dim=1, keepdim=True)).exp().float()  # a softmax in log space
        rows = torch.cumsum(has_neg.long(), 0) - 1  # row of each anchor inside probs
        counts = pos[has_neg].sum(dim=1)  # pairs per anchor row (a is sorted by anchor)
        draws = torch.multinomial(probs.cpu(), max(int(counts.max()), 1), replacement=True,
                                  generator=self.generator)  # [A', max pairs per anchor]
        starts = torch.cumsum(counts, 0) - counts
        pair_rows = rows[a]
        within = torch.arange(a.numel(), device=d.device) - starts[pair_rows]
        n = draws[pair_rows.cpu(), within.cpu()].to(d.device)
        return Mined.triplets(a, p, n)
