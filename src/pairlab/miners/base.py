"""Shared pieces of the miners and margin losses: the metric matrix, label masks and :class:`Mined`.

A miner never changes the equation, only which comparisons enter it (DESIGN §1: it changes V or W).
It looks at a batch under ``torch.no_grad()`` and returns a :class:`Mined`: either *pairs*
``(a1, p, a2, n)`` (positive pairs ``(a1[k], p[k])``, negative pairs ``(a2[k], n[k])``) or *triplets*
``(a, p, n)``, the index conventions of pytorch-metric-learning (PML). ``Mined`` converts itself to
whatever the consumer needs:

- the margin losses (:mod:`pairlab.objectives.margin`) take it as ``indices_tuple``;
- the InfoNCE family takes ``mined.weights(targets)`` as the dense ``W`` (1 on every positive and on
  the mined negatives, 0 on the other negatives), so only mined negatives enter the partition;
- ``mined.masks(n, m)`` gives the boolean positive/negative pair masks ``[N, M]``.

Metrics (PML names in brackets): ``"euclidean"`` [``LpDistance()``], ``"squared_euclidean"``
[``LpDistance(power=2)``], both on L2-normalised embeddings unless ``normalize=False``;
``"cosine"`` [``CosineSimilarity()``] and ``"dot"`` [``DotProductSimilarity()``] are similarities
(larger = closer). Everything works on *distance-like* values ``d' = d`` for distances and
``d' = -s`` for similarities, so "hard" and "easy" mean the same thing for both.

Reference embeddings (``ref_emb [M, D]``, ``ref_labels [M]``) replace the batch as candidates (for
cross-batch memory); ``ref_self_offset=o`` says anchor ``i`` is reference row ``i + o`` (so that
self-pair is excluded). Without ``ref_emb`` the candidates are the anchors and the diagonal is excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pairlab._validate import check_choice, check_embeddings, check_labels, check_same_dim, check_tensor
from pairlab.pairs import not_self, same_id
from pairlab.scores import compute_dtype, normalize, prepare, similarity_matrix

METRICS = ("euclidean", "squared_euclidean", "cosine", "dot")
DISTANCES = ("euclidean", "squared_euclidean")


def is_similarity(metric: str) -> bool:
    return metric in ("cosine", "dot")


def pairwise(x: torch.Tensor, y: torch.Tensor, metric: str, normalize_embeddings: bool = True) -> torch.Tensor:
    """The ``[N, M]`` metric matrix (distances or similarities) in float32/float64.

    Euclidean distances use ``|x|^2 + |y|^2 - 2 x.y`` clamped at 0 and a square root whose gradient
    is 0 (not inf/NaN) at distance 0, so duplicate embeddings do not poison the backward.
    """
    check_choice("metric", metric, METRICS)
    if is_similarity(metric):
        return similarity_matrix(x, y, metric)
    if normalize_embeddings:
        x, y = normalize(x), normalize(y)
    else:
        x, y = x.to(compute_dtype(x)), y.to(compute_dtype(y))
    dt = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dt), y.to(dt)
    d2 = ((x * x).sum(-1)[:, None] + (y * y).sum(-1)[None, :] - 2.0 * (x @ y.T)).clamp_min(0.0)
    if metric == "squared_euclidean":
        return d2
    pos = d2 > 0
    return torch.where(pos, d2, torch.ones_like(d2)).sqrt() * pos


def rowwise(x: torch.Tensor, y: torch.Tensor, metric: str, normalize_embeddings: bool = True) -> torch.Tensor:
    """The metric between matching rows of ``x [T, D]`` and ``y [T, D]`` -> ``[T]`` (same rules as :func:`pairwise`)."""
    check_choice("metric", metric, METRICS)
    if is_similarity(metric):
        x, y = prepare(x, metric), prepare(y, metric)
        return (x * y.to(x.dtype)).sum(-1)
    if normalize_embeddings:
        x, y = normalize(x), normalize(y)
    else:
        x, y = x.to(compute_dtype(x)), y.to(compute_dtype(y))
    d2 = ((x - y.to(x.dtype)) ** 2).sum(-1)
    if metric == "squared_euclidean":
        return d2
    pos = d2 > 0
    return torch.where(pos, d2, torch.ones_like(d2)).sqrt() * pos


def distance_like(mat: torch.Tensor, metric: str) -> torch.Tensor:
    """``d' = d`` for distances, ``-s`` for similarities: smaller is always closer."""
    return -mat if is_similarity(metric) else mat


@dataclass
class Batch:
    """Validated anchors/candidates of one call."""

    x: torch.Tensor  # anchors [N, D]
    y: torch.Tensor  # candidates [M, D]
    labels: torch.Tensor | None  # [N]
    ref_labels: torch.Tensor | None  # [M]
    valid: torch.Tensor  # [N, M] bool, not-self

    def label_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.labels is None or self.ref_labels is None:
            raise ValueError("labels is required when no indices_tuple is given")
        same = same_id(self.labels, self.ref_labels)
        return same & self.valid, ~same & self.valid


def check_batch(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None,
    ref_emb: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
    ref_self_offset: int | None = None,
) -> Batch:
    """Validate the ``embeddings [B, D], labels [B] (+ ref_emb [M, D], ref_labels [M])`` convention."""
    check_embeddings("embeddings", embeddings, 2, "[B, D]")
    n = embeddings.shape[0]
    if labels is not None:
        labels = check_labels("labels", labels, n).to(embeddings.device).long()
    if ref_emb is None:
        if ref_labels is not None:
            raise ValueError("ref_labels was given without ref_emb")
        if ref_self_offset is not None:
            raise ValueError("ref_self_offset was given without ref_emb")
        return Batch(embeddings, embeddings, labels, labels, not_self(n, device=embeddings.device))
    check_embeddings("ref_emb", ref_emb, 2, "[M, D]")
    check_same_dim(("embeddings", "ref_emb"), (embeddings, ref_emb))
    m = ref_emb.shape[0]
    if ref_labels is not None:
        ref_labels = check_labels("ref_labels", ref_labels, m).to(embeddings.device).long()
    elif labels is not None:
        raise ValueError("ref_labels [M] is required with ref_emb when labels are given")
    if ref_self_offset is None:
        valid = torch.ones(n, m, dtype=torch.bool, device=embeddings.device)
    else:
        if not (0 <= int(ref_self_offset) and int(ref_self_offset) + n <= m):
            raise ValueError(f"ref_self_offset must lie in [0, {m - n}] for {n} anchors and {m} refs, "
                             f"got {ref_self_offset}")
        valid = not_self(n, m, int(ref_self_offset), device=embeddings.device)
    return Batch(embeddings, ref_emb, labels, ref_labels, valid)


def _index(name: str, t: object, bound: int, device: torch.device) -> torch.Tensor:
    t = check_tensor(name, t)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.ndim != 1:
        raise TypeError(f"{name} must be a 1-D integer index tensor, got dtype {t.dtype} shape {tuple(t.shape)}")
    t = t.to(device).long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= bound):
        raise ValueError(f"{name} indices must lie in [0, {bound}), got [{int(t.min())}, {int(t.max())}]")
    return t


@dataclass
class Mined:
    """Output of a miner: pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)`` (PML's index tuples).

    Indices of ``a1``/``a2``/``a`` are anchor rows, ``p``/``n`` candidate (reference) rows.
    """

    a1: torch.Tensor
    p: torch.Tensor
    a2: torch.Tensor
    n: torch.Tensor
    is_triplets: bool = False

    @classmethod
    def triplets(cls, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> Mined:
        return cls(a, p, a, n, is_triplets=True)

    @classmethod
    def coerce(cls, indices_tuple: object, n_rows: int, n_cols: int, device: torch.device) -> Mined:
        """Accept a :class:`Mined` or a PML tuple ``(a, p, n)`` / ``(a1, p, a2, n)``; check index ranges."""
        if isinstance(indices_tuple, Mined):
            t, trip = indices_tuple.as_tuple(), indices_tuple.is_triplets
        elif isinstance(indices_tuple, (tuple, list)) and len(indices_tuple) in (3, 4):
            t, trip = tuple(indices_tuple), len(indices_tuple) == 3
        else:
            raise TypeError(
                "indices_tuple must be a pairlab Mined, a triplet tuple (a, p, n) or a pair tuple "
                f"(a1, p, a2, n), got {type(indices_tuple).__name__}"
            )
        names = ("a", "p", "n") if trip else ("a1", "p", "a2", "n")
        bounds = (n_rows, n_cols, n_cols) if trip else (n_rows, n_cols, n_rows, n_cols)
        idx = [_index(f"indices_tuple.{nm}", x, b, device) for nm, x, b in zip(names, t, bounds, strict=True)]
        if trip:
            if not (idx[0].shape == idx[1].shape == idx[2].shape):
                raise ValueError(f"indices_tuple (a, p, n) must have equal lengths, got {[len(i) for i in idx]}")
            return cls.triplets(*idx)
        if idx[0].shape != idx[1].shape or idx[2].shape != idx[3].shape:
            raise ValueError("indices_tuple (a1, p, a2, n): a1/p and a2/n must have equal lengths, got "
                             f"{[len(i) for i in idx]}")
        return cls(*idx)

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        if self.is_triplets:
            return self.a1, self.p, self.n
        return self.a1, self.p, self.a2, self.n

    def __len__(self) -> int:
        return int(self.a1.numel()) if self.is_triplets else int(self.a1.numel() + self.a2.numel())

    def masks(self, n_rows: int, n_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean ``[N, M]`` positive-pair and negative-pair masks (duplicate pairs collapse)."""
        dev = self.a1.device
        pos = torch.zeros(n_rows, n_cols, dtype=torch.bool, device=dev)
        neg = torch.zeros_like(pos)
        pos[self.a1, self.p] = True
        neg[self.a2, self.n] = True
        if bool((pos & neg).any()):
            raise ValueError("indices_tuple marks the same (anchor, candidate) pair as positive and negative")
        return pos, neg

    def weights(self, targets: torch.Tensor) -> torch.Tensor:
        """Dense ``W [N, M]`` for the InfoNCE family: 1 on every positive (``targets > 0``) and on the mined
        negatives, 0 on the other candidates. Pass as ``weights=`` to NTXent/SupCon/DCL."""
        check_tensor("targets", targets)
        if targets.ndim != 2:
            raise ValueError(f"targets must have shape [N, M], got {tuple(targets.shape)}")
        _, neg = self.masks(targets.shape[0], targets.shape[1])
        return ((targets > 0) | neg).to(torch.float32)


class Miner(nn.Module):
    """Base class: ``miner(embeddings [B, D], labels [B], ref_emb=None, ref_labels=None,
    ref_self_offset=None) -> Mined``, always under ``torch.no_grad()``; ``last_stats`` holds counts."""

    def __init__(self, metric: str = "euclidean", normalize_embeddings: bool = True):
        super().__init__()
        self.metric = check_choice("metric", metric, METRICS)
        self.normalize_embeddings = bool(normalize_embeddings)
        self.last_stats: dict[str, float] = {}

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        ref_self_offset: int | None = None,
    ) -> Mined:
        if labels is None:
            raise ValueError("labels is required by a miner: an integer tensor of shape [B]")
        batch = check_batch(embeddings, labels, ref_emb, ref_labels, ref_self_offset)
        with torch.no_grad():
            mat = pairwise(batch.x.detach(), batch.y.detach(), self.metric, self.normalize_embeddings)
            pos, neg = batch.label_masks()
            out = self.mine(distance_like(mat, self.metric), pos, neg)
        self.last_stats = {
            "mined_pos_pairs" if not out.is_triplets else "mined_triplets": float(out.a1.numel()),
        }
        if not out.is_triplets:
            self.last_stats["mined_neg_pairs"] = float(out.a2.numel())
        return out

    def mine(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> Mined:
        """``d [N, M]`` distance-like (smaller = closer), ``pos``/``neg`` label masks (self excluded)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"metric={self.metric!r}"


def masked_argmin(d: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``argmin`` of ``d`` over ``mask``; returns (index, row has any)."""
    inf = torch.full_like(d, float("inf"))
    return torch.where(mask, d, inf).argmin(dim=1), mask.any(dim=1)


def masked_argmax(d: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ninf = torch.full_like(d, float("-inf"))
    return torch.where(mask, d, ninf).argmax(dim=1), mask.any(dim=1)
