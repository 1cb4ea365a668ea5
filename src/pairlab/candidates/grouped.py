"""Grouped hard-negative batches: a batch sampler that keeps each sample with its mined/generated hard negatives.

Paper: Sahin, Li, Khan, Cremers, Tresp, "Enhancing Multimodal Compositional Reasoning of Visual Language
Models with Generative Negative Mining", WACV 2024. Official code ``ugorsahin/Generative-Negative-Mining``
(``training/negative_mining_dataset.py``, ``mode="item_based"``). The loss stays plain CLIP/InfoNCE: the method
lives in batch composition, so that variations of the same source (each a positive pair, and a hard negative
of the others in both directions) land in one batch::

    per batch: groups_per_batch groups (20), drawn without replacement;
      per group: per_group members (2) without replacement, p_k ∝ (s_k - min_group s + prob_eps)  (eps 0.5)
                 (groups with <= per_group members: all of them)
      + fillers_per_group random filler items (8 random COCO pairs per group)
    => 20 * (2 + 8) = 200 pairs

``groups[i]`` is item ``i``'s group key (e.g. ``(origin_name, item)``) or ``None`` for a filler item; without
any ``None`` the fillers are drawn from items outside the batch's groups. ``scores`` (e.g. the ITM filter
score) default to uniform. Use as ``DataLoader(ds, batch_sampler=sampler)``; deterministic given ``seed`` and
``set_epoch``. The generation pipeline (diffusion inpainting) is out of scope.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Sampler

from pairlab.registry import register


@register("candidates", "grouped", role="sampler", paper="Sahin et al. 2024 (Generative Negative Mining, WACV)",
          summary="batch sampler: each sampled group's variations (hard negatives) plus random fillers")
class GroupedHardNegativeBatchSampler(Sampler[list[int]]):
    """Batches of ``groups_per_batch`` groups x ``per_group`` members + ``fillers_per_group`` fillers each.

    Args:
        groups: per item, its group key or ``None`` (filler); may be bound later with :meth:`bind`.
        scores: per item, the score of the score-proportional draw (default: uniform).
        groups_per_batch, per_group, fillers_per_group, prob_eps: see the module docstring.
        num_batches: batches per epoch (default: groups // groups_per_batch).
        seed: base seed (``set_epoch`` adds the epoch).
    """

    def __init__(self, groups: Sequence[Hashable | None] | None = None, scores: Sequence[float] | None = None,
                 groups_per_batch: int = 20, per_group: int = 2, fillers_per_group: int = 8,
                 prob_eps: float = 0.5, num_batches: int | None = None, seed: int = 0):
        for name, v, lo in (("groups_per_batch", groups_per_batch, 1), ("per_group", per_group, 1),
                            ("fillers_per_group", fillers_per_group, 0)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not float(prob_eps) > 0:
            raise ValueError(f"prob_eps must be > 0, got {prob_eps}")
        self.groups_per_batch, self.per_group, self.fillers_per_group = groups_per_batch, per_group, fillers_per_group
        self.prob_eps, self.num_batches_arg, self.seed, self.epoch = float(prob_eps), num_batches, int(seed), 0
        self.members: list[torch.Tensor] = []
        self.member_scores: list[torch.Tensor] = []
        self.fillers = torch.zeros(0, dtype=torch.long)
        self.n_items = 0
        if groups is not None:
            self.bind(groups, scores)

    def bind(self, groups: Sequence[Hashable | None], scores: Sequence[float] | None = None
             ) -> GroupedHardNegativeBatchSampler:
        groups = list(groups)
        if scores is not None:
            scores = [float(s) for s in scores]
            if len(scores) != len(groups):
                raise ValueError(f"scores must have one value per item ({len(groups)}), got {len(scores)}")
        by: dict[Hashable, list[int]] = {}
        fill: list[int] = []
        for i, g in enumerate(groups):
            (fill if g is None else by.setdefault(g, [])).append(i)
        if len(by) < self.groups_per_batch:
            raise ValueError(f"groups_per_batch={self.groups_per_batch} but only {len(by)} groups exist")
        self.members = [torch.tensor(v) for v in by.values()]
        self.member_scores = [torch.tensor([scores[i] for i in v] if scores is not None else [0.0] * len(v),
                                           dtype=torch.float64) for v in by.values()]
        self.fillers = torch.tensor(fill, dtype=torch.long)
        self.n_items = len(groups)
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.num_batches_arg is not None:
            return int(self.num_batches_arg)
        return len(self.members) // self.groups_per_batch

    def group_probabilities(self, g: int) -> torch.Tensor:
        """``p_k ∝ s_k - min s + prob_eps`` of group ``g``'s members."""
        s = self.member_scores[g]
        p = s - s.min() + self.prob_eps
        return p / p.sum()

    def __iter__(self) -> Iterator[list[int]]:
        if not self.members:
            raise ValueError("the sampler has no groups: pass groups= or call bind(groups, scores)")
        gen = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        for _ in range(len(self)):
            chosen = torch.randperm(len(self.members), generator=gen)[: self.groups_per_batch].tolist()
            batch: list[int] = []
            for g in chosen:
                mem = self.members[g]
                if mem.numel() <= self.per_group:
                    batch.extend(mem.tolist())
                else:
                    pick = torch.multinomial(self.group_probabilities(g), self.per_group, replacement=False,
                                             generator=gen)
                    batch.extend(mem[pick].tolist())
            n_fill = self.fillers_per_group * len(chosen)
            if n_fill:
                pool = self.fillers
                if pool.numel() == 0:  # no filler items: any item outside the chosen groups
                    taken = torch.zeros(self.n_items, dtype=torch.bool)
                    for g in chosen:
                        taken[self.members[g]] = True
                    pool = torch.nonzero(~taken).flatten()
                if pool.numel() < n_fill:
                    raise ValueError(f"need {n_fill} filler items per batch, only {pool.numel()} available")
                batch.extend(pool[torch.randperm(pool.numel(), generator=gen)[:n_fill]].tolist())
            yield batch
