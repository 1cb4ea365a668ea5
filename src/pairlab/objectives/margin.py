"""Shared base of the margin (pair/triplet) losses: contrastive, triplet, multi-similarity, circle,
lifted structure (one module each, in :mod:`pairlab.objectives`).

Call convention (the one of pytorch-metric-learning, PML), documented in every loss::

    loss = Loss(...)(embeddings [B, D], labels [B], indices_tuple=None,
                     ref_emb=None, ref_labels=None, ref_self_offset=None)

- ``labels`` defines the pairs: same label = positive, different label = negative, self-pairs excluded.
  With multi-view batches ``z [B, K, D]`` flatten first: ``loss(z.flatten(0, 1),
  labels.repeat_interleave(K))`` (for self-supervised training pass sample ids as ``labels``).
  The loss is registered with meta ``input="labels"`` for that reason.
- ``indices_tuple`` (a :class:`~pairlab.miners.Mined` or PML tuple ``(a, p, n)`` / ``(a1, p, a2, n)``)
  restricts the comparisons to mined ones; ``labels`` may then be ``None``. A loss can also own a miner
  (``miner="batch-hard"`` or a :class:`~pairlab.miners.Miner`), which is run when no tuple is given;
  this is how a config reaches a miner.
- ``ref_emb [M, D], ref_labels [M]`` replace the batch as candidates (cross-batch memory); with
  ``ref_self_offset=o`` anchor ``i`` is reference row ``i + o`` and that self-pair is excluded.

Metrics: ``"euclidean"`` / ``"squared_euclidean"`` (on L2-normalised embeddings unless
``normalize_embeddings=False``, PML's ``LpDistance`` default) or ``"cosine"`` / ``"dot"`` similarities.
Margins are in the metric's raw units, with the PML meaning (for similarities the inequalities flip).

Reductions: ``"mean"`` (over the loss's elements: pairs, triplets or anchors, named in each
docstring), ``"mean_nonzero"`` (PML's ``AvgNonZeroReducer``: mean over elements with a loss > 0; 0 when
none), ``"sum"``. A batch without any positive pair raises by default (``on_no_positive="raise"``);
``"zero"`` makes the terms that need a positive an exact, graph-connected 0. Pair masks are dense
``[B, M]`` booleans: memory is O(B*M), never O(B^3) (PML's lifted-structure and triplet "all" paths
build O(P*N) index products).
"""

from __future__ import annotations

import torch
from torch import nn

from pairlab._validate import check_choice
from pairlab.miners.base import (
    METRICS,
    Batch,
    Mined,
    Miner,
    check_batch,
    distance_like,
    is_similarity,
    pairwise,
)

REDUCTIONS = ("mean", "mean_nonzero", "sum")


def masked_logsumexp(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``log sum_{mask} exp(x)`` along ``dim``; rows without any entry give ``-inf`` with a NaN-free backward."""
    has = mask.any(dim=dim)
    xm = torch.where(mask, x, torch.full_like(x, float("-inf")))
    xm = torch.where(has.unsqueeze(dim), xm, torch.zeros_like(x))
    out = torch.logsumexp(xm, dim=dim)
    return torch.where(has, out, torch.full_like(out, float("-inf"))), has


def log1p_sum_exp(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``log(1 + sum_{mask} exp(x))`` as a logsumexp with an extra 0 (exactly 0 for empty rows)."""
    xm = torch.where(mask, x, torch.full_like(x, float("-inf")))
    zero = torch.zeros_like(xm.narrow(dim, 0, 1))
    return torch.logsumexp(torch.cat([xm, zero], dim=dim), dim=dim)


def build_miner(miner: str | Miner | None, miner_kwargs: dict | None = None) -> Miner | None:
    if miner is None or isinstance(miner, Miner):
        if miner_kwargs:
            raise ValueError("miner_kwargs needs miner given by name")
        return miner
    if isinstance(miner, str):
        from pairlab import registry

        return registry.build("miners", miner, **(miner_kwargs or {}))
    raise TypeError(f"miner must be a registered miner name, a pairlab Miner or None, got {type(miner).__name__}")


class MarginObjective(nn.Module):
    """Base class of the margin losses (see the module docstring for the call convention)."""

    def __init__(
        self,
        metric: str = "euclidean",
        normalize_embeddings: bool = True,
        reduction: str = "mean",
        on_no_positive: str = "raise",
        miner: str | Miner | None = None,
        miner_kwargs: dict | None = None,
        allowed_metrics: tuple[str, ...] = METRICS,
    ):
        super().__init__()
        self.metric = check_choice("metric", metric, allowed_metrics)
        self.normalize_embeddings = bool(normalize_embeddings)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.on_no_positive = check_choice("on_no_positive", on_no_positive, ("raise", "zero"))
        self.miner = build_miner(miner, miner_kwargs)
        self.last_stats: dict[str, float] = {}

    # ---- helpers for subclasses -------------------------------------------------------------
    def _sign(self) -> float:
        """Margins in distance-like units: ``m`` for distances, ``-m`` for similarities."""
        return -1.0 if is_similarity(self.metric) else 1.0

    def _setup(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None,
        indices_tuple: object,
        ref_emb: torch.Tensor | None,
        ref_labels: torch.Tensor | None,
        ref_self_offset: int | None,
    ) -> tuple[Batch, torch.Tensor, Mined | None]:
        batch = check_batch(embeddings, labels, ref_emb, ref_labels, ref_self_offset)
        if indices_tuple is None and self.miner is not None:
            if labels is None:
                raise ValueError("labels is required to run the loss's miner")
            indices_tuple = self.miner(embeddings, labels, ref_emb, ref_labels, ref_self_offset)
        if indices_tuple is None and labels is None:
            raise ValueError("labels [B] is required when no indices_tuple is given")
        mined = None
        if indices_tuple is not None:
            mined = Mined.coerce(indices_tuple, batch.x.shape[0], batch.y.shape[0], batch.x.device)
        d = distance_like(pairwise(batch.x, batch.y, self.metric, self.normalize_embeddings), self.metric)
        return batch, d, mined

    @staticmethod
    def _pair_masks(batch: Batch, mined: Mined | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive / negative pair masks ``[N, M]`` from labels or from a miner (triplets -> their pairs)."""
        if mined is None:
            return batch.label_masks()
        return mined.masks(batch.x.shape[0], batch.y.shape[0])

    def _no_positive(self, what: str) -> None:
        if self.on_no_positive == "raise":
            raise ValueError(
                f"no {what} in the batch: the loss is undefined. Check labels (each class needs >= 2 "
                "samples; an m-per-class sampler guarantees it) or the miner, or pass on_no_positive='zero'."
            )

    def _reduce(self, values: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """Reduce element losses ``values`` (1-D); ``anchor`` is any tensor of the graph for an exact 0."""
        zero = anchor.sum() * 0.0
        if values.numel() == 0:
            return zero
        if self.reduction == "sum":
            return values.sum()
        if self.reduction == "mean":
            return values.mean()
        nz = int((values > 0).sum())
        return values.sum() / nz if nz else zero + values.sum() * 0.0

    def extra_repr(self) -> str:
        miner = "" if self.miner is None else f", miner={type(self.miner).__name__}"
        return f"metric={self.metric!r}, reduction={self.reduction!r}{miner}"
