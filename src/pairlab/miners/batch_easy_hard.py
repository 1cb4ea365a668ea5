"""Batch easy-hard miner (Xuan, Stylianou, Liu & Pless, "Improved Embeddings with Easy Positive
Triplet Mining", WACV 2020), with PML ``BatchEasyHardMiner``'s strategies.

Per anchor, a positive and a negative are chosen by strategy (distance-like ``d``, smaller = closer):

- positives: ``"easy"`` = closest positive (default, the paper), ``"hard"`` = farthest,
  ``"semihard"`` = farthest positive still closer than the chosen negative, ``"all"`` = every positive;
- negatives: ``"semihard"`` = closest negative farther than the chosen positive (default),
  ``"hard"`` = closest negative, ``"easy"`` = farthest, ``"all"`` = every negative.

Without ``"all"`` the result is one triplet per anchor that has both; with ``"all"`` on either side
it is pairs ``(a1, p, a2, n)`` (PML returns the same index sets). ``allowed_pos_range`` /
``allowed_neg_range`` ``(lo, hi)`` restrict the raw metric values (distances or similarities) first.
"""

from __future__ import annotations

import torch

from pairlab._validate import check_choice
from pairlab.miners.base import Mined, Miner, is_similarity, masked_argmax, masked_argmin
from pairlab.registry import register

STRATEGIES = ("easy", "hard", "semihard", "all")


@register("miners", "batch-easy-hard", output="triplets|pairs", paper="Xuan et al. 2020")
class BatchEasyHardMiner(Miner):
    """Easy-positive / semi-hard-negative triplets per anchor (strategies configurable as in PML)."""

    def __init__(
        self,
        pos_strategy: str = "easy",
        neg_strategy: str = "semihard",
        allowed_pos_range: tuple[float, float] | None = None,
        allowed_neg_range: tuple[float, float] | None = None,
        metric: str = "euclidean",
        normalize_embeddings: bool = True,
    ):
        super().__init__(metric, normalize_embeddings)
        self.pos_strategy = check_choice("pos_strategy", pos_strategy, STRATEGIES)
        self.neg_strategy = check_choice("neg_strategy", neg_strategy, STRATEGIES)
        if pos_strategy == neg_strategy == "semihard":
            raise ValueError("pos_strategy and neg_strategy cannot both be 'semihard'")
        if {pos_strategy, neg_strategy} == {"semihard", "all"}:
            raise ValueError("'semihard' cannot be combined with 'all' (pos_strategy/neg_strategy)")
        self.allowed_pos_range = self._range("allowed_pos_range", allowed_pos_range)
        self.allowed_neg_range = self._range("allowed_neg_range", allowed_neg_range)

    @staticmethod
    def _range(name: str, r: tuple[float, float] | None) -> tuple[float, float] | None:
        if r is None:
            return None
        if len(r) != 2 or not float(r[0]) <= float(r[1]):
            raise ValueError(f"{name} must be (low, high) with low <= high, got {r}")
        return float(r[0]), float(r[1])

    def _in_range(self, d: torch.Tensor, r: tuple[float, float] | None) -> torch.Tensor:
        if r is None:
            return torch.ones_like(d, dtype=torch.bool)
        raw = -d if is_similarity(self.metric) else d
        return (raw >= r[0]) & (raw <= r[1])

    def _pick(self, d: torch.Tensor, mask: torch.Tensor, closest: bool):
        return masked_argmin(d, mask) if closest else masked_argmax(d, mask)

    def mine(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> Mined:
        pos = pos & self._in_range(d, self.allowed_pos_range)
        neg = neg & self._in_range(d, self.allowed_neg_range)
        ps, ns = self.pos_strategy, self.neg_strategy
        rows = torch.arange(d.shape[0], device=d.device)
        if ps == "semihard":  # negative first, then the farthest positive closer than it
            n, has_n = self._pick(d, neg, closest=(ns == "hard"))
            p, has_p = masked_argmax(d, pos & (d < d[rows, n][:, None]))
        elif ns == "semihard":  # positive first, then the closest negative farther than it
            p, has_p = self._pick(d, pos, closest=(ps == "easy"))
            n, has_n = masked_argmin(d, neg & (d > d[rows, p][:, None]))
        else:
            if ps != "all":
                p, has_p = self._pick(d, pos, closest=(ps == "easy"))
            if ns != "all":
                n, has_n = self._pick(d, neg, closest=(ns == "hard"))
        if ps != "all" and ns != "all":
            a = torch.nonzero(has_p & has_n).flatten()
            return Mined.triplets(a, p[a], n[a])
        if ps == "all":
            a1, pp = torch.nonzero(pos, as_tuple=True)
        else:
            a1 = torch.nonzero(has_p).flatten()
            pp = p[a1]
        if ns == "all":
            a2, nn_ = torch.nonzero(neg, as_tuple=True)
        else:
            a2 = torch.nonzero(has_n).flatten()
            nn_ = n[a2]
        return Mined(a1, pp, a2, nn_)
