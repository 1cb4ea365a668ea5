"""InfoNCE family: NT-Xent (SimCLR), SupCon, CLIP and InfoNCE with explicit negatives.

All four are the one equation of :mod:`pairlab.nce` with different P, V and candidates.

Papers:
    - NT-Xent: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
      ICML 2020. ``loss_i = -s_{i,pos(i)} + log sum_{k != i} exp(s_ik)`` over the 2N (here BK) views.
    - SupCon: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020, Eq. 2 (L_out, default)
      and Eq. 3 (L_in).
    - CLIP: Radford et al., 2021: ``(CE(a b^T / tau) + CE(b a^T / tau)) / 2``.
    - InfoNCE: van den Oord et al., 2018, with the explicit-negatives convention of
      info-nce-pytorch (column 0 the positive, then the negatives; no in-batch negatives when
      ``negative_keys`` is given).

Conventions (match lightly / pytorch-metric-learning / open_clip once mapped): NT-Xent averages over
all ``B*K`` anchors; CLIP averages over ``B`` in each direction, then the two directions.

Distributed (``torch.distributed`` initialised with more than one rank): anchors stay local, the
candidates of every rank are gathered with gradient (in-batch InfoNCE gathers the keys), ids are offset
by rank, and each rank returns its *share* of the global mean (``loss * W * n_local / N``, see
:func:`pairlab.distributed.global_mean`). Under DDP the loss averaged over ranks and every parameter
gradient then equal the single-process big batch, also with uneven batch sizes or numbers of anchors
with a positive. Parameters of the objective (a learnable temperature) are outside DDP: average their
gradients with :func:`pairlab.distributed.average_gradients`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pairlab import distributed, pairs
from pairlab._validate import (
    check_choice,
    check_embeddings,
    check_labels,
    check_same_batch,
    check_same_dim,
)
from pairlab.nce import AGGREGATIONS, NCEResult, nce
from pairlab.objectives.base import ContrastiveObjective
from pairlab.registry import register
from pairlab.scores import prepare


def _kernel():
    """The tiled kernel module (see :mod:`pairlab.kernels`)."""
    from pairlab import kernels

    return kernels


def _local_on_no_positive(obj: ContrastiveObjective) -> str:
    """On several ranks a rank may lack positives while others have some: decide globally in :func:`_finish`."""
    return "zero" if distributed.is_active() else obj.on_no_positive


def _finish(obj: ContrastiveObjective, result: NCEResult) -> torch.Tensor:
    """Record stats; on several ranks turn the local mean into this rank's share of the global mean.

    The local loss is a mean over this rank's used anchors ``n_r``; it is rescaled by ``W * n_r / N``
    (``N`` all-reduced, see :func:`pairlab.distributed.global_mean`) so that DDP's gradient average is
    the gradient of the single-process mean over all ``N`` anchors, even when ranks have different
    numbers of anchors with a positive. The returned value is this rank's share: average it over ranks
    to log the global loss. ``last_stats["anchors_used_global"]`` holds ``N``.
    """
    if distributed.is_active():
        n_local = float(result.used.sum()) if isinstance(result.used, torch.Tensor) else float(result.used)
        result.loss, n_global = distributed.global_mean(result.loss, n_local)
        result.stats["anchors_used_global"] = n_global
        if n_global == 0 and obj.on_no_positive == "raise":
            raise ValueError(
                "no anchor on any rank has a positive (and a candidate): the loss is undefined. "
                "Check labels/ids, or pass on_no_positive='zero' to get an explicit zero loss."
            )
    return obj._record(result)


WeightFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# keys at or below this value never match a real key: used for unlabelled extra candidates
UNMATCHED_KEY = -(2**62)


def _views_loss(
    obj: ContrastiveObjective,
    z: torch.Tensor,
    labels: torch.Tensor | None,
    aggregation: str,
    decoupled: bool,
    extra: torch.Tensor | None = None,
    extra_labels: torch.Tensor | None = None,
    weights: torch.Tensor | WeightFn | None = None,
) -> torch.Tensor:
    """Multi-view objective on local anchors against gathered (+ extra) candidates.

    ``weights`` is a dense ``W [B*K, M]`` or a callable ``(scores, targets, valid) -> W`` (a weights
    component, e.g. hardness weighting); either forces the dense path.

    Anchors: the ``B*K`` local views. Candidates: the views of all ranks (gathered with gradient,
    rank order), then the ``extra`` columns (queue, synthesised). Positives are key equality:
    global sample ids (instance pairing) or labels; ``extra`` rows are positives only through
    ``extra_labels``. Self-pairs are excluded.
    """
    check_embeddings("z", z, 3, "[B, K, D]")
    b, k, d = z.shape
    if k < 2 and labels is None:
        raise ValueError(f"z needs K >= 2 views per sample, got shape {tuple(z.shape)}")
    if labels is not None:
        labels = check_labels("labels", labels, b).to(z.device)
    anchors = prepare(z.reshape(b * k, d), obj.similarity)
    # several ranks: rows of every rank (batch sizes may differ; K must match), this rank's first row
    rows = distributed.sizes(b * k, z.device)
    offset = distributed.offset(b * k, rows)
    if labels is None:
        keys = (torch.arange(b, device=z.device) + offset // k).repeat_interleave(k)
    else:
        keys = labels.long().repeat_interleave(k)
    candidates = distributed.gather_with_grad(anchors, rows)
    cand_keys = distributed.gather_no_grad(keys, rows)
    nop = _local_on_no_positive(obj)
    if extra is not None:
        check_embeddings("extra", extra, 2, "[M, D]", min_rows=0)
        check_same_dim(("z", "extra"), (z, extra))
        if extra_labels is None:
            ekeys = UNMATCHED_KEY - torch.arange(extra.shape[0], device=z.device)
        else:
            if labels is None:
                raise ValueError("extra_labels needs labels (label pairing); got labels=None")
            ekeys = check_labels("extra_labels", extra_labels, extra.shape[0]).to(z.device).long()
        candidates = torch.cat([candidates, prepare(extra, obj.similarity).to(candidates.dtype)])
        cand_keys = torch.cat([cand_keys, ekeys])
    scale = obj.temperature.scale()
    kern = _kernel()
    if weights is not None and obj.backend == "tiled":
        raise ValueError("weights need the dense path (the tiled kernel takes no dense W): use backend='auto'")
    if weights is None and kern.applies(obj.backend, anchors.shape[0], candidates.shape[0]):
        result = kern.views_nce(
            anchors, candidates, keys, cand_keys, offset, scale,
            aggregation=aggregation, decoupled=decoupled, on_no_positive=nop,
        )
        return _finish(obj, result)
    valid = pairs.not_self(anchors.shape[0], candidates.shape[0], offset, device=z.device)
    targets = pairs.same_id(keys, cand_keys) & valid
    scores = (anchors @ candidates.T) * scale
    if callable(weights):  # a weights component: W from the (detached) scores, positives and mask
        weights = weights(scores.detach(), targets, valid)
    return _finish(
        obj,
        nce(scores, targets, valid, weights, aggregation=aggregation, decoupled=decoupled, on_no_positive=nop),
    )


@register("objectives", "ntxent", input="views", paper="Chen et al. 2020 (SimCLR)")
class NTXent(ContrastiveObjective):
    """NT-Xent (SimCLR) for any number of views ``K >= 2``.

    Every view of every sample is an anchor; its positives are the other ``K - 1`` views of the same
    sample and its candidates are all ``B*K - 1`` other views. For ``K = 2`` this is exactly SimCLR's
    loss (mean over ``2B`` anchors). For ``K > 2`` the positives are averaged in log space
    (``aggregation="mean_log"``, SupCon L_out on instance labels).

    Args:
        temperature: ``tau`` (SimCLR default 0.5 on ImageNet; 0.1 is common on small data).
        similarity: ``"cosine"`` (default) or ``"dot"``.

    Examples:
        >>> loss_fn = NTXent(temperature=0.1)
        >>> z = torch.randn(32, 2, 128)          # [B, K, D]: two views of 32 samples
        >>> loss = loss_fn(z)
    """

    def __init__(self, temperature: float = 0.1, similarity: str = "cosine", **kw):
        super().__init__(temperature, similarity, **kw)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        extra: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z: [B, K, D]``; ``labels`` is accepted for a uniform interface and ignored.

        ``extra: [M, D]`` adds negative candidate columns (queue, synthesised negatives);
        ``weights: [B*K, W*B*K + M]`` is a dense ``W`` (forces the dense path).
        """
        return _views_loss(self, z, None, "mean_log", False, extra, None, weights)


@register("objectives", "supcon", input="views", supervised=True, paper="Khosla et al. 2020")
class SupCon(ContrastiveObjective):
    """Supervised contrastive loss; positives are all other views with the same label.

    Args:
        aggregation: ``"mean_log"`` = L_out (Eq. 2, the paper's recommended form, default), the mean
            over positives of ``log p_ij``; ``"log_mean"`` = L_in (Eq. 3), the log of the mean
            positive probability (solo-learn's form).
        temperature: ``tau`` (paper: 0.1).

    Anchors whose label occurs only once in the batch (and ``K = 1``) have no positive: they are
    excluded from the mean and counted in ``last_stats["anchors_without_positive"]``.

    Examples:
        >>> loss = SupCon(temperature=0.1)(torch.randn(32, 2, 128), torch.randint(0, 10, (32,)))
    """

    def __init__(self, temperature: float = 0.1, aggregation: str = "mean_log", similarity: str = "cosine", **kw):
        super().__init__(temperature, similarity, **kw)
        self.aggregation = check_choice("aggregation", aggregation, AGGREGATIONS)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor,
        *,
        extra: torch.Tensor | None = None,
        extra_labels: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z: [B, K, D]``, ``labels: [B]``; ``extra: [M, D]`` with optional ``extra_labels: [M]``."""
        if labels is None:
            raise ValueError("labels is required for SupCon: an integer tensor of shape [B]")
        return _views_loss(self, z, labels, self.aggregation, False, extra, extra_labels, weights)


def _two_tower_check(a: torch.Tensor, b: torch.Tensor, names=("a", "b")) -> None:
    check_embeddings(names[0], a, 2, "[B, D]")
    check_embeddings(names[1], b, 2, "[B, D]")
    check_same_batch(names, (a, b))
    check_same_dim(names, (a, b))


@register("objectives", "clip", input="pair", paper="Radford et al. 2021 (CLIP)")
class CLIPLoss(ContrastiveObjective):
    """Symmetric two-tower InfoNCE (CLIP): ``(CE(a b^T / tau, I) + CE(b a^T / tau, I)) / 2``.

    Row ``i`` of ``a`` is paired with row ``i`` of ``b``; all other rows of the other tower are
    negatives. Equals open_clip's ``ClipLoss`` with ``logit_scale = 1 / tau``.

    Args:
        temperature: initial ``tau`` (CLIP: 0.07, learnable with the scale clamped at 100).
        learnable_temperature: learn ``log(1/tau)``.
    """

    def __init__(
        self, temperature: float = 0.07, similarity: str = "cosine", learnable_temperature: bool = False, **kw
    ):
        super().__init__(temperature, similarity, learnable_temperature=learnable_temperature, **kw)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a: [B, D]``, ``b: [B, D]``; on several ranks the other tower is gathered with gradient."""
        _two_tower_check(a, b)
        scale = self.temperature.scale()
        a, b = prepare(a, self.similarity), prepare(b, self.similarity)
        rows = distributed.sizes(a.shape[0], a.device)
        a_all, b_all = distributed.gather_with_grad(a, rows), distributed.gather_with_grad(b, rows)
        offset = distributed.offset(a.shape[0], rows)
        nop = _local_on_no_positive(self)
        kern = _kernel()
        if kern.applies(self.backend, a.shape[0], b_all.shape[0]):
            return _finish(self, kern.clip_nce(a, b, a_all, b_all, offset, scale, on_no_positive=nop))
        eye = pairs.same_id(torch.arange(a.shape[0], device=a.device) + offset,
                            torch.arange(b_all.shape[0], device=a.device))
        r1 = nce((a @ b_all.T) * scale, eye, on_no_positive=nop)
        r2 = nce((b @ a_all.T) * scale, eye, on_no_positive=nop)
        r1.loss = (r1.loss + r2.loss) / 2
        r1.per_anchor = (r1.per_anchor + r2.per_anchor) / 2  # both directions, as the tiled kernel reports
        return _finish(self, r1)


@register("objectives", "infonce", input="pair", paper="van den Oord et al. 2018")
class InfoNCE(ContrastiveObjective):
    """InfoNCE with in-batch or explicit negatives (one direction: query -> keys).

    ``forward(query [B, D], positive_key [B, D], negative_keys=None)``:
        - ``negative_keys=None``: in-batch negatives, scores ``query @ positive_key^T``, target the
          diagonal.
        - ``negative_keys: [M, D]`` (``negative_mode="unpaired"``): every query is scored against
          its positive and the same M negatives.
        - ``negative_keys: [B, M, D]`` (``negative_mode="paired"``): query i has its own M negatives.

    With explicit negatives the positive is column 0 and the partition is positive + negatives,
    exactly info-nce-pytorch's convention.
    """

    def __init__(self, temperature: float = 0.1, negative_mode: str = "unpaired", similarity: str = "cosine", **kw):
        super().__init__(temperature, similarity, **kw)
        self.negative_mode = check_choice("negative_mode", negative_mode, ("unpaired", "paired"))

    def forward(
        self, query: torch.Tensor, positive_key: torch.Tensor, negative_keys: torch.Tensor | None = None
    ) -> torch.Tensor:
        _two_tower_check(query, positive_key, ("query", "positive_key"))
        scale = self.temperature.scale()
        q, p = prepare(query, self.similarity), prepare(positive_key, self.similarity)
        nop = _local_on_no_positive(self)
        if negative_keys is None:
            # several ranks: the keys of every rank are candidates (gathered with gradient)
            rows = distributed.sizes(q.shape[0], q.device)
            p_all = distributed.gather_with_grad(p, rows)
            offset = distributed.offset(q.shape[0], rows)
            scores = (q @ p_all.T) * scale
            eye = pairs.same_id(torch.arange(q.shape[0], device=q.device) + offset,
                                torch.arange(p_all.shape[0], device=q.device))
            return _finish(self, nce(scores, eye, on_no_positive=nop))
        if self.negative_mode == "unpaired":
            check_embeddings("negative_keys", negative_keys, 2, "[M, D] (negative_mode='unpaired')")
            check_same_dim(("query", "negative_keys"), (query, negative_keys))
            neg = q @ prepare(negative_keys, self.similarity).T
        else:
            check_embeddings("negative_keys", negative_keys, 3, "[B, M, D] (negative_mode='paired')")
            check_same_batch(("query", "negative_keys"), (query, negative_keys))
            check_same_dim(("query", "negative_keys"), (query, negative_keys))
            neg = torch.einsum("bd,bmd->bm", q, prepare(negative_keys, self.similarity))
        pos = (q * p).sum(dim=1, keepdim=True)
        scores = torch.cat([pos, neg], dim=1) * scale
        target = torch.zeros_like(scores, dtype=torch.bool)
        target[:, 0] = True
        # explicit negatives are per query (a queue is identical on every rank): nothing to gather
        return _finish(self, nce(scores, target, on_no_positive=nop))
