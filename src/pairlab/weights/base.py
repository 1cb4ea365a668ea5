"""Weights protocol, composition, and per-sample losses for anchor weights (DBPM).

A *partition* weights component is a callable ``(scores [N, M] detached, targets [N, M] bool, valid [N, M]
bool) -> W [N, M] >= 0`` (DESIGN §1), what :func:`pairlab.objectives.infonce._views_loss` accepts as
``weights=`` (NT-Xent, SupCon, DCL). Components may also define ``prepare(z, extra=None, labels=None, **context)``,
called by the loop before the objective when ``W`` depends on the embeddings themselves rather than the
scores (cluster consensus, learned weights) or on per-sample data (inverse propensity: ``context["ids"]``).
``scores`` are ``sim / tau`` as the objective computed them.

Lifecycle in ``pairlab train`` (:mod:`pairlab.train.components`; every hook optional, declared by the
component, never special-cased by name)::

    w.setup(ctx)                    # once before training: ctx.model, ctx.x, ctx.labels, ctx.num_samples, ctx.dim,
                                    # ctx.objective, ctx.encode_dataset() [N, D], ctx.raw_features() [N, P]
    w.prepare(z, extra, labels, ids=ids, epoch=epoch)     # every step, z = the views the objective sees
    loss = obj(z, labels=labels, weights=w, extra=extra)  # partition weights (applies_to="partition")

Anchor weights (registry meta ``applies_to="anchor"``, DBPM) are called ``w.set_epoch(epoch)`` (when it
changes), ``w.record(ids, l)``, ``loss = mean(w(ids, l) * l)`` with ``l`` the per-sample losses of
:func:`per_sample_views_loss`. Samplers (``applies_to="pairs"``) are not per-step components.

:class:`ComposeWeights` multiplies components (callables or dense tensors), so ``W = W_1 * W_2 * ...``
(zeros stay zeros: an excluded column stays excluded). *Anchor* weights (:mod:`pairlab.weights.dbpm`,
``target="anchor"``) multiply per-anchor loss terms instead; :func:`per_sample_views_loss` computes the
per-sample losses under any partition ``W`` so both compose::

    l = per_sample_views_loss(z, weights=ComposeWeights(HardnessWeights(), c.weights()), extra=c.extra)
    loss = (dbpm(index, l) * l).mean()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pairlab import pairs
from pairlab._validate import check_embeddings, check_labels, check_same_dim, check_tensor
from pairlab.nce import nce
from pairlab.scores import prepare

WeightFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def check_weight_inputs(scores: object, targets: object, valid: object) -> tuple[torch.Tensor, ...]:
    """Validate the ``(scores, targets, valid)`` triple a weights component receives."""
    scores = check_tensor("scores", scores)
    if scores.ndim != 2 or not scores.dtype.is_floating_point:
        raise ValueError(f"scores must be a float tensor of shape [N, M], got {tuple(scores.shape)} {scores.dtype}")
    shape = tuple(scores.shape)
    out = [scores]
    for name, x in (("targets", targets), ("valid", valid)):
        x = check_tensor(name, x)
        if tuple(x.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)} like scores, got {tuple(x.shape)}")
        out.append(x.bool() if x.dtype != torch.bool else x)
    return tuple(out)


def negatives_mask(targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Valid comparisons that are not positives (``targets`` may be soft: positive where > 0)."""
    return valid.bool() & ~(targets > 0)


class PairWeights(nn.Module):
    """Base class of partition weights components: subclasses implement :meth:`weights`."""

    def prepare(self, z: torch.Tensor, extra: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **context: Any) -> None:
        """Hook called before the objective with the step's embeddings (default: nothing).

        ``context``: what the loop knows about the step (``ids`` dataset indices ``[B]``, ``epoch``)."""

    def weights(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        scores, targets, valid = check_weight_inputs(scores, targets, valid)
        w = self.weights(scores, targets, valid)
        if tuple(w.shape) != tuple(scores.shape):
            raise RuntimeError(f"{type(self).__name__} returned W of shape {tuple(w.shape)}, "
                               f"expected {tuple(scores.shape)}")
        return w


class ComposeWeights(nn.Module):
    """Product of weights components (callables ``(scores, targets, valid) -> W``) and dense ``W`` tensors.

    ``None`` entries are skipped, so ``ComposeWeights(c.weights(), user_weights)`` works when either is
    absent. Components are applied in order and a column given ``W = 0`` by an earlier one is passed as
    not ``valid`` to the later ones (so a hardness mean over negatives ignores masked-out columns).
    :meth:`prepare` forwards to every component that has one.

    Examples:
        >>> w = ComposeWeights(HardnessWeights(beta=1.0), CalibratedMarginWeights(calibration=c))
        >>> loss = NTXent()(z, weights=w)
    """

    def __init__(self, *components: WeightFn | torch.Tensor | None):
        super().__init__()
        self.components = [c for c in components if c is not None]
        for i, c in enumerate(self.components):
            if not (callable(c) or isinstance(c, torch.Tensor)):
                raise TypeError(f"components[{i}] must be a weights callable or a tensor, got {type(c).__name__}")
        self.modules_ = nn.ModuleList([c for c in self.components if isinstance(c, nn.Module)])

    def prepare(self, z: torch.Tensor, extra: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **context: Any) -> None:
        for c in self.components:
            if hasattr(c, "prepare") and not isinstance(c, torch.Tensor):
                c.prepare(z, extra, labels, **context)

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        scores, targets, valid = check_weight_inputs(scores, targets, valid)
        w = torch.ones_like(scores)
        for i, c in enumerate(self.components):
            wi = c if isinstance(c, torch.Tensor) else c(scores, targets, valid)
            if tuple(wi.shape) != tuple(scores.shape):
                raise ValueError(f"components[{i}] gave W of shape {tuple(wi.shape)}, expected {tuple(scores.shape)}")
            w = w * wi.to(scores.device)
            valid = valid & (w.detach() > 0)  # a column excluded so far is no comparison for the next
        return w


def per_sample_views_loss(
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    weights: WeightFn | torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    temperature: float = 0.1,
    similarity: str = "cosine",
    decoupled: bool = False,
    **nce_kw: Any,
) -> torch.Tensor:
    """Per-sample loss ``[B]`` (mean over the ``K`` anchor views) of NT-Xent/SupCon under a partition ``W``.

    Single process. Candidates are the ``B*K`` views then ``extra`` (negatives); positives are the other
    views of the sample (``labels=None``) or same-label views. This is what anchor weights (DBPM) multiply.
    """
    check_embeddings("z", z, 3, "[B, K, D]")
    b, k, d = z.shape
    anchors = prepare(z.reshape(b * k, d), similarity)
    keys = torch.arange(b, device=z.device) if labels is None else check_labels("labels", labels, b).to(z.device)
    keys = keys.long().repeat_interleave(k)
    cands, ckeys = anchors, keys
    if extra is not None:
        check_embeddings("extra", extra, 2, "[M, D]", min_rows=0)
        check_same_dim(("z", "extra"), (z, extra))
        cands = torch.cat([anchors, prepare(extra, similarity).to(anchors.dtype)])
        ckeys = torch.cat([keys, torch.full((extra.shape[0],), -(2**62), device=z.device, dtype=torch.long)])
    valid = pairs.not_self(b * k, cands.shape[0], 0, device=z.device)
    targets = pairs.same_id(keys, ckeys) & valid
    scores = (anchors @ cands.T) / temperature
    if callable(weights):
        weights = weights(scores.detach(), targets, valid)
    nce_kw.setdefault("on_no_positive", "zero")
    res = nce(scores, targets, valid, weights, decoupled=decoupled, reduction="none", **nce_kw)
    return res.per_anchor.view(b, k).mean(dim=1)
