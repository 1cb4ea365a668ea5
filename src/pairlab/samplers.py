"""Batch samplers that make the pairs of a batch meaningful.

- :class:`MPerClassSampler`: every batch holds ``batch_size // m`` classes with ``m`` samples each, so
  every anchor has ``m - 1`` positives (margin losses and SupCon never meet a no-positive batch).
  pytorch-metric-learning's ``MPerClassSampler(labels, m, batch_size)`` yields a flat index stream that
  a ``DataLoader(batch_size=...)`` must cut at the right places; this one is a *batch* sampler
  (``DataLoader(ds, batch_sampler=MPerClassSampler(...))``), so the grouping cannot be broken by the
  loader. Classes with fewer than ``m`` samples are drawn with replacement (as PML).
- :class:`NoDuplicatesBatchSampler`: for text pairs / triplets, no value (text) appears twice in a batch,
  so an in-batch "negative" is never a copy of the anchor's positive (sentence-transformers'
  ``NoDuplicatesBatchSampler``, same greedy rule).

Both are deterministic given ``seed``; call ``set_epoch(epoch)`` (as with ``DistributedSampler``) for a
new order each epoch. Under DDP give each rank its own ``seed`` (e.g. ``seed + rank``) or shard the data.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Sampler


def _labels_list(labels: object) -> list[int]:
    if isinstance(labels, torch.Tensor):
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be a 1-D integer tensor, got dtype {labels.dtype} shape "
                             f"{tuple(labels.shape)}")
        return [int(x) for x in labels.tolist()]
    try:
        out = [int(x) for x in labels]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"labels must be a 1-D sequence of ints, got {type(labels).__name__}") from None
    return out


class MPerClassSampler(Sampler[list[int]]):
    """Batches of ``batch_size // m`` distinct classes x ``m`` samples each.

    Args:
        labels: ``[N]`` class of every dataset item.
        m: samples per class in a batch (>= 2 for positives to exist).
        batch_size: a multiple of ``m``, with ``batch_size // m`` <= number of classes.
        num_batches: batches per epoch (default ``len(labels) // batch_size``).
        seed: base seed; the epoch is added (``set_epoch``).

    Examples:
        >>> sampler = MPerClassSampler(train_labels, m=4, batch_size=64)
        >>> loader = DataLoader(dataset, batch_sampler=sampler)
    """

    def __init__(self, labels: object, m: int, batch_size: int, num_batches: int | None = None, seed: int = 0):
        lab = _labels_list(labels)
        if not isinstance(m, int) or m < 1:
            raise ValueError(f"m must be an int >= 1, got {m!r}")
        if not isinstance(batch_size, int) or batch_size < m or batch_size % m:
            raise ValueError(f"batch_size must be a positive multiple of m={m}, got {batch_size!r}")
        by_class: dict[int, list[int]] = {}
        for i, c in enumerate(lab):
            by_class.setdefault(c, []).append(i)
        self.classes = sorted(by_class)
        self.by_class = {c: torch.tensor(v) for c, v in by_class.items()}
        self.m, self.batch_size = m, batch_size
        self.classes_per_batch = batch_size // m
        if self.classes_per_batch > len(self.classes):
            raise ValueError(f"batch_size // m = {self.classes_per_batch} classes per batch, but labels have only "
                             f"{len(self.classes)} classes")
        self.num_batches = len(lab) // batch_size if num_batches is None else int(num_batches)
        if self.num_batches < 1:
            raise ValueError(f"num_batches must be >= 1 (got {self.num_batches}; dataset of {len(lab)} items "
                             f"with batch_size {batch_size})")
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        for _ in range(self.num_batches):
            picked = torch.randperm(len(self.classes), generator=g)[: self.classes_per_batch]
            batch: list[int] = []
            for ci in picked.tolist():
                idx = self.by_class[self.classes[ci]]
                if len(idx) >= self.m:
                    take = idx[torch.randperm(len(idx), generator=g)[: self.m]]
                else:
                    take = idx[torch.randint(len(idx), (self.m,), generator=g)]
                batch.extend(take.tolist())
            yield batch


class NoDuplicatesBatchSampler(Sampler[list[int]]):
    """Batches in which no value occurs twice (across all columns of the selected rows).

    Args:
        rows: per dataset item, the values to keep unique, e.g. ``(anchor_text, positive_text)`` tuples
            (a plain string or other hashable counts as a single value).
        batch_size: items per batch.
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        seed: base seed of the shuffle (plus the epoch, see ``set_epoch``).

    Greedy rule (sentence-transformers): walk the shuffled remaining items, add an item if none of its
    values is already in the batch, emit the batch when full; skipped items wait for a later batch. Every
    item is emitted exactly once per epoch (unless dropped with the last batch); a batch can be smaller
    than ``batch_size`` only at the end, when the remaining items all collide.
    """

    def __init__(self, rows: Sequence[object], batch_size: int, drop_last: bool = False, seed: int = 0):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.values: list[frozenset[Hashable]] = []
        for i, r in enumerate(rows):
            vals = (r,) if isinstance(r, (str, bytes)) or not isinstance(r, Sequence) else tuple(r)
            try:
                self.values.append(frozenset(vals))
            except TypeError:
                raise TypeError(f"rows[{i}] must hold hashable values, got {r!r}") from None
        self.batch_size, self.drop_last = batch_size, bool(drop_last)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.values)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        remaining = dict.fromkeys(torch.randperm(len(self.values), generator=g).tolist())
        while remaining:
            seen: set[Hashable] = set()
            batch: list[int] = []
            for i in remaining:
                if self.values[i] & seen:
                    continue
                batch.append(i)
                seen |= self.values[i]
                if len(batch) == self.batch_size:
                    break
            for i in batch:
                del remaining[i]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch
