"""The candidates protocol: what a candidate generator returns and how a loop feeds it to an objective.

A candidates component is an ``nn.Module`` (subclass :class:`CandidateGenerator`)::

    c = gen(z, labels, **context)          # z: [B, K, D]; labels: [B] or None; context: ids=[B], epoch=, step=
    ...loss, backward, optimiser step...
    gen.update(z.detach(), labels, **context)   # e.g. enqueue keys, refresh a memory bank (default: no-op)

and returns a :class:`Candidates` (every field optional):

- ``extra [M, D]``: extra candidate columns of the score matrix (DESIGN §1), negatives unless
  ``extra_labels`` match the anchor's label (SupCon).
- ``extra_labels [M]``: labels of the extra rows, for label-pairing objectives (SupCon).
- ``positives [B*K', M]`` bool (rows: the anchors of :meth:`Candidates.views_or`, i.e. ``K' = K`` unless
  ``views`` is set): extra columns that are positives of *specific* anchors. The InfoNCE-family
  objectives cannot take it (their positives are key equality); it is read by :func:`pairlab.nce.nce`-level
  code and by the hardness report. pairlab's generators hand per-anchor positives over as ``views`` instead.
- ``views [B, K', D]``: the views the objective should see instead of ``z``: synthesised positives either
  replace views (FT's extrapolated ``q^, k^``: ``K' = K``) or are appended (neighbour / memory positives:
  ``K' = K + 1``). Every view of a sample is a positive of every other view of it (NT-Xent/SupCon).
- ``mask [B*K', M]`` bool (same rows as ``positives``): which anchor may see which extra column (``None``:
  all). Per-anchor synthetic negatives (MoCHi's mixes of *its* hardest negatives, InterCLR's sampled
  negatives) are masked out for the other anchors. :meth:`Candidates.weights` turns it into a weights
  callable (``W = 0`` outside the mask).
- ``oracle_labels [M]``: class labels of the extra rows for diagnostics only (false-negative rates of the
  hardness report); never given to an objective.

How a training loop calls a generator (``obj`` an objective with ``input="views"``, ``wfn`` an optional
weights component)::

    c = gen(z, labels, ids=ids)                     # z = encode(x): [B, K, D]
    loss = obj(c.views_or(z), labels=labels, **c.objective_kwargs(wfn))
    loss.backward(); opt.step()
    gen.update(z.detach(), labels, ids=ids)

Lifecycle in ``pairlab train`` (:mod:`pairlab.train.components`; hooks are optional and declared by the
component, never special-cased by name)::

    gen.setup(ctx)      # once before training (and on resume, before the saved state is loaded); ctx holds
                        # model (initial weights), x (training inputs), labels, num_samples, dim, objective,
                        # encode_dataset() -> [N, D] (initial encoder, no augmentation), raw_features() -> [N, P]
    c = gen(z, labels, ids=ids, epoch=epoch)        # every step
    gen.update(z.detach(), labels, ids=ids, epoch=epoch)   # after the optimiser step

Constructor arguments come from ``candidates_args``, then the run (``dim``, ``num_samples``, ``max_epochs``,
``loss`` = the run's objective) for the parameters the constructor takes, then the registry meta
``train_defaults`` a component declares for the loop (e.g. InterCLR's small-data sizes). Uses: InterCLR
initialises its memory in ``setup``, NeighbourPositives builds its frozen index, CLAPS builds a prototype head.
Samplers (registry meta ``role="sampler"``, e.g. ``grouped``) are rejected with a message saying how to use them.

``objective_kwargs`` returns only the keyword arguments that are set (``extra``, ``extra_labels``,
``weights``), so it also works with NT-Xent (which takes no ``extra_labels``). Single process or DDP: the
extra columns come after the gathered in-batch columns and the mask rows are this rank's anchors, so
:meth:`Candidates.weights` is correct on several ranks too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pairlab._validate import check_embeddings, check_labels, check_tensor

WeightFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _check_bool_matrix(name: str, x: torch.Tensor | None, n: int, m: int) -> None:
    if x is None:
        return
    check_tensor(name, x)
    if x.dtype != torch.bool or tuple(x.shape) != (n, m):
        raise ValueError(f"{name} must be a bool tensor of shape [{n}, {m}], got {tuple(x.shape)} {x.dtype}")


@dataclass
class Candidates:
    """Output of a candidate generator (see the module docstring for the meaning of each field)."""

    extra: torch.Tensor | None = None
    extra_labels: torch.Tensor | None = None
    positives: torch.Tensor | None = None
    views: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    oracle_labels: torch.Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def num_extra(self) -> int:
        return 0 if self.extra is None else int(self.extra.shape[0])

    def validate(self, z: torch.Tensor) -> Candidates:
        """Check every field against ``z [B, K, D]``; returns ``self``."""
        b, k, d = z.shape
        m = self.num_extra
        if self.extra is not None:
            check_embeddings("extra", self.extra, 2, "[M, D]", min_rows=0)
            if self.extra.shape[1] != d:
                raise ValueError(f"extra must have shape [M, {d}] (the dim of z), got {tuple(self.extra.shape)}")
        for name in ("extra_labels", "oracle_labels"):
            lab = getattr(self, name)
            if lab is not None:
                check_labels(name, lab, m)
        if self.views is not None:
            check_embeddings("views", self.views, 3, "[B, K', D]")
            if self.views.shape[0] != b or self.views.shape[2] != d:
                raise ValueError(f"views must have shape [{b}, K', {d}], got {tuple(self.views.shape)}")
        rows = b * (k if self.views is None else self.views.shape[1])
        _check_bool_matrix("positives", self.positives, rows, m)
        _check_bool_matrix("mask", self.mask, rows, m)
        return self

    def views_or(self, z: torch.Tensor) -> torch.Tensor:
        """The views the objective should see: :attr:`views` when set, else ``z``."""
        return z if self.views is None else self.views

    def weights(self) -> WeightFn | None:
        """A weights callable with ``W = 0`` on extra columns outside :attr:`mask` (``None`` without a mask).

        The callable expects the extra columns to be the last ``M`` columns of the score matrix and its rows
        to be the ``B*K`` anchors of ``z`` (true for every InfoNCE-family views objective, also under DDP).
        """
        if self.mask is None:
            return None
        mask = self.mask

        def fn(scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
            n, mt = scores.shape
            m = mask.shape[1]
            if mask.shape[0] != n or mt < m:
                raise ValueError(
                    f"candidates mask of shape {tuple(mask.shape)} does not fit scores of shape {(n, mt)}: "
                    "the rows must be the anchors and the extra columns the last ones"
                )
            w = torch.ones_like(scores)
            w[:, mt - m :] = mask.to(device=scores.device, dtype=scores.dtype)
            return w

        return fn

    def objective_kwargs(self, weights: WeightFn | torch.Tensor | None = None) -> dict[str, Any]:
        """Keyword arguments for a views objective: ``extra``, ``extra_labels``, ``weights`` when set.

        ``weights`` (a weights component or dense ``W``) is composed (multiplied) with the mask weights.
        """
        kw: dict[str, Any] = {}
        if self.extra is not None and self.num_extra > 0:
            kw["extra"] = self.extra
            if self.extra_labels is not None:
                kw["extra_labels"] = self.extra_labels
        own = self.weights() if self.num_extra > 0 else None
        if own is not None and weights is not None:
            from pairlab.weights.base import ComposeWeights

            kw["weights"] = ComposeWeights(own, weights)
        elif own is not None or weights is not None:
            kw["weights"] = own if own is not None else weights
        return kw


class CandidateGenerator(nn.Module):
    """Base class: ``forward(z [B, K, D], labels [B] | None, **context) -> Candidates``; ``update`` hook."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> Candidates:
        raise NotImplementedError

    def update(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> None:
        """Called after the optimiser step with the step's (detached) embeddings; default no-op."""

    def setup(self, context: Any) -> None:
        """Called once before training with a :class:`pairlab.train.components.SetupContext`; default no-op."""


def check_views(z: object, labels: object = None, min_views: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate ``z [B, K, D]`` (with ``K >= min_views``) and optional ``labels [B]``."""
    z = check_embeddings("z", z, 3, "[B, K, D]")
    if z.shape[1] < min_views:
        raise ValueError(f"z needs K >= {min_views} views per sample, got shape {tuple(z.shape)}")
    if labels is not None:
        labels = check_labels("labels", labels, z.shape[0]).to(z.device)
    return z, labels


def check_ids(ids: object, b: int, num_samples: int | None = None) -> torch.Tensor:
    """Validate dataset indices ``ids [B]`` (context of generators with a per-sample memory)."""
    if ids is None:
        raise ValueError(f"ids is required: the dataset indices of the batch, an integer tensor of shape [{b}]")
    return check_labels("ids", ids, b, num_classes=num_samples).long()
