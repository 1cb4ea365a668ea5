"""CACR: contrastive attraction and contrastive repulsion.

Paper: Zheng et al., "Contrastive Attraction and Contrastive Repulsion for Representation Learning",
TMLR 2023, arXiv 2105.03746. Official code: ``JegZheng/CACR-SSL`` (``small_scale_experiments/losses``
for the small-scale form, ``large_scale_shift_experiments/imagenet/ours/builder.py`` for the MoCo
queue form).

CACR is not a log-partition loss: each anchor takes the *expected* squared distance under a
Boltzmann ("conditional transport") distribution over its positives and over its negatives. With
``u`` the L2-normalised views ``u^0 .. u^{K-1}`` and ``d2(a, b) = ||a - b||^2``:

Small-scale form (``forward(z)``, ``z: [B, K, D]``)::

    CA  = (1/K) sum_x mean_i sum_{v != x} w+_iv * alpha * d2(u_i^x, u_i^v),
          w+_i. = softmax_v( tau_pos * d2(u_i^x, u_i^v) )           # farther positives weigh MORE
    CR  = mean_{x < y} mean_i sum_{j != i} w-_ij * (-beta) * d2(u_i^x, u_j^y),
          w-_i. = softmax_j( -tau_neg * d2(u_i^x, u_j^y) )          # closer negatives weigh MORE
    L   = CA + CR

``tau_pos`` / ``tau_neg`` multiply the distances (they are inverse temperatures): at 0 the weights
are uniform, which equals ``choice="none"``. ``choice="without_w1"`` / ``"without_w2"`` make only
the attraction / repulsion weights uniform. ``debiased=True`` uses the official debiased repulsion
``(-tau_plus * d2(u_i^x, u_i^y) + sum_j w-_ij cost_ij) / (1 - tau_plus)``.

Queue form (``forward(z, extra=queue)``, ``extra: [M, D]``, e.g. ``Queue.negatives()``): every view
``x`` is a query ``q = u^x``; attraction runs against the other views' *keys* (``keys: [B, K, D]``,
the momentum encoder's output; default ``z.detach()``); repulsion runs over the queue
(``d2 = 2 - 2 q.k``) concatenated with the intra-batch distances ``||q_i - q_j||^2 (j != i)``
(``intra_batch=True``); both are averaged over the ``K`` queries and scaled by ``alpha`` / ``beta``.

Gradient through the weights (``detach_weights``):
    ``None`` (default) follows the official code of each form: small-scale weights are **not**
    detached; the queue form computes the attraction weights and the queue part of the repulsion
    weights under ``no_grad`` but keeps the intra-batch part attached (a partial inconsistency of
    the official code). ``True`` / ``False`` detach all / none of the weights.

Official-code quirk (flag ``official_queue_cache``, default ``False``): the queue form of the
official code caches ``q @ queue`` in a function attribute on its first call, so every query view
reuses the *first* view's queue similarities. ``True`` reproduces that; ``False`` uses each view's own.

Defaults: ``alpha = beta = 1``, ``tau_pos = tau_neg = 1`` (argparse defaults; README uses
``tau_neg = 0.9`` on CIFAR-10 and ``2.0`` on CIFAR-100/STL-10), ``K = 5`` views in the paper.
Inputs are always L2-normalised (the official encoder ends in an L2 norm); otherwise ``-||.||^2``
is unbounded below.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from pairlab._validate import check_choice, check_embeddings, check_positive, check_same_dim
from pairlab.registry import register
from pairlab.scores import normalize

CHOICES = ("full", "without_w1", "without_w2", "none")


def _check_nonneg(name: str, value: float) -> float:
    v = float(value)
    if not (v >= 0) or math.isinf(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return v


def _weighted(logits: torch.Tensor, cost: torch.Tensor, mask: torch.Tensor | None, uniform: bool,
              detach: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_j w_ij cost_ij`` with ``w = softmax(logits)`` over the unmasked columns (mask True = drop)."""
    if uniform:
        logits = torch.zeros_like(logits)
    if detach:
        logits = logits.detach()
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
        cost = cost.masked_fill(mask, 0.0)
    w = torch.softmax(logits, dim=1)
    return (w * cost).sum(dim=1), w


def _entropy(w: torch.Tensor) -> float:
    with torch.no_grad():
        logw = torch.where(w > 0, w.log(), torch.zeros_like(w))
        return float(-(w * logw).sum(dim=1).mean())


def attraction(
    u: torch.Tensor,
    alpha: float = 1.0,
    tau_pos: float = 1.0,
    uniform: bool = False,
    detach_weights: bool = False,
    keys: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contrastive attraction on normalised views ``u: [B, K, D]`` (keys default to ``u``).

    Returns ``(CA, w+ of the last query view [B, K-1])``.
    """
    b, k, _ = u.shape
    keys = u if keys is None else keys
    total = u.new_zeros(())
    w = u.new_zeros(b, k - 1)
    for x in range(k):
        others = [v for v in range(k) if v != x]
        d2 = (u[:, x:x + 1] - keys[:, others]).pow(2).sum(-1)  # [B, K-1]
        term, w = _weighted(tau_pos * d2, alpha * d2, None, uniform, detach_weights)
        total = total + term.mean()
    return total / k, w


def repulsion(
    u: torch.Tensor,
    beta: float = 1.0,
    tau_neg: float = 1.0,
    uniform: bool = False,
    detach_weights: bool = False,
    debiased: bool = False,
    tau_plus: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Small-scale contrastive repulsion over the unordered view pairs of ``u: [B, K, D]``.

    Returns ``(CR, w- of the last pair [B, B])`` (the diagonal of ``w-`` is 0).
    """
    b, k, _ = u.shape
    eye = torch.eye(b, dtype=torch.bool, device=u.device)
    total = u.new_zeros(())
    w = u.new_zeros(b, b)
    pairs = list(itertools.combinations(range(k), 2))
    for x, y in pairs:
        d2 = (u[:, x, None] - u[None, :, y]).pow(2).sum(-1)  # [B, B]
        term, w = _weighted(-tau_neg * d2, -beta * d2, eye, uniform, detach_weights)
        if debiased:
            pos = (u[:, x] - u[:, y]).pow(2).sum(-1)
            term = (-tau_plus * pos + term) / (1.0 - tau_plus)
        total = total + term.mean()
    return total / len(pairs), w


@register("objectives", "cacr", input="views", paper="Zheng et al. 2023 (TMLR, arXiv 2105.03746)")
class CACR(nn.Module):
    """Contrastive attraction + contrastive repulsion (small-scale form, or queue form with ``extra``).

    Args:
        alpha, beta: scales of the attraction / repulsion costs (official: 1, 1).
        tau_pos, tau_neg: inverse temperatures of the positive / negative weights (official: 1, 1;
            README: ``tau_neg`` 0.9 on CIFAR-10, 2.0 on CIFAR-100).
        choice: ``"full"``, ``"without_w1"`` (uniform attraction weights), ``"without_w2"``
            (uniform repulsion weights) or ``"none"`` (both uniform).
        debiased: official debiased repulsion with ``tau_plus`` (small-scale form only).
        detach_weights: ``None`` follows each form's official code (see the module docstring).
        intra_batch: queue form: add the intra-batch negatives to the queue (official default).
        official_queue_cache: queue form: reuse the first view's queue similarities for every view,
            as the official code does by accident.

    Examples:
        >>> loss = CACR()(torch.randn(128, 5, 32))                       # K = 5 views
        >>> loss = CACR()(torch.randn(128, 2, 32), extra=torch.randn(4096, 32))
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        tau_pos: float = 1.0,
        tau_neg: float = 1.0,
        choice: str = "full",
        debiased: bool = False,
        tau_plus: float = 0.1,
        detach_weights: bool | None = None,
        intra_batch: bool = True,
        official_queue_cache: bool = False,
    ):
        super().__init__()
        self.alpha = check_positive("alpha", alpha)
        self.beta = check_positive("beta", beta)
        self.tau_pos = _check_nonneg("tau_pos", tau_pos)
        self.tau_neg = _check_nonneg("tau_neg", tau_neg)
        self.choice = check_choice("choice", choice, CHOICES)
        self.debiased = bool(debiased)
        self.tau_plus = float(tau_plus)
        if not (0.0 <= self.tau_plus < 1.0):
            raise ValueError(f"tau_plus must lie in [0, 1), got {tau_plus}")
        self.detach_weights = detach_weights
        self.intra_batch = bool(intra_batch)
        self.official_queue_cache = bool(official_queue_cache)
        self.last_stats: dict[str, float] = {}

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        extra: torch.Tensor | None = None,
        keys: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z: [B, K, D]``; ``extra: [M, D]`` selects the queue form; ``keys: [B, K, D]`` its
        momentum keys (queue form only). ``labels`` is accepted for the uniform interface and ignored."""
        check_embeddings("z", z, 3, "[B, K, D]")
        b, k, _ = z.shape
        if k < 2:
            raise ValueError(f"z needs K >= 2 views per sample, got shape {tuple(z.shape)}")
        if b < 2:
            raise ValueError(f"z needs at least 2 samples (negatives), got shape {tuple(z.shape)}")
        u = normalize(z)
        uni_a = self.choice in ("without_w1", "none")
        uni_r = self.choice in ("without_w2", "none")
        if extra is None:
            if keys is not None:
                raise ValueError("keys is only used by the queue form: pass extra=[M, D] as well")
            det = bool(self.detach_weights)
            ca, w_pos = attraction(u, self.alpha, self.tau_pos, uni_a, det)
            cr, w_neg = repulsion(u, self.beta, self.tau_neg, uni_r, det, self.debiased, self.tau_plus)
        else:
            check_embeddings("extra", extra, 2, "[M, D]")
            check_same_dim(("z", "extra"), (z, extra))
            if self.debiased:
                raise ValueError("debiased=True is defined for the small-scale form only (extra=None)")
            if keys is None:
                kn = u.detach()
            else:
                check_embeddings("keys", keys, 3, "[B, K, D]")
                if keys.shape != z.shape:
                    raise ValueError(f"keys must have the shape of z {tuple(z.shape)}, got {tuple(keys.shape)}")
                kn = normalize(keys).to(u.dtype)
            ca, cr, w_pos, w_neg = self._queue_form(u, kn, normalize(extra).to(u.dtype), uni_a, uni_r)
        self.last_stats = {
            "attraction": float(ca.detach()),
            "repulsion": float(cr.detach()),
            "w_pos_entropy": _entropy(w_pos),
            "w_neg_entropy": _entropy(w_neg),
            "w_pos_max": float(w_pos.detach().max(dim=1).values.mean()),
            "w_neg_max": float(w_neg.detach().max(dim=1).values.mean()),
        }
        return ca + cr

    def _queue_form(self, u, kn, queue, uni_a, uni_r):
        b, k, _ = u.shape
        det_a = True if self.detach_weights is None else self.detach_weights
        det_q = True if self.detach_weights is None else self.detach_weights
        det_i = False if self.detach_weights is None else self.detach_weights
        eye = torch.eye(b, dtype=torch.bool, device=u.device)
        ca, cr = u.new_zeros(()), u.new_zeros(())
        w_pos = w_neg = u.new_zeros(b, 1)
        q_dot_queue0 = u[:, 0] @ queue.T
        for x in range(k):
            q = u[:, x]
            others = [v for v in range(k) if v != x]
            d2 = (q[:, None] - kn[:, others]).pow(2).sum(-1)
            term, w_pos = _weighted(self.tau_pos * d2, d2, None, uni_a, det_a)
            ca = ca + self.alpha * term.mean()
            qq = q_dot_queue0 if self.official_queue_cache else q @ queue.T
            d2q = 2.0 - 2.0 * qq  # [B, M]
            logits_q = -self.tau_neg * d2q
            if det_q:
                logits_q = logits_q.detach()
            cost, logits, mask = d2q, logits_q, None
            if self.intra_batch:
                d2i = (q[:, None] - q[None, :]).pow(2).sum(-1)  # [B, B], diagonal masked
                logits_i = -self.tau_neg * d2i
                if det_i:
                    logits_i = logits_i.detach()
                cost = torch.cat([d2q, d2i], dim=1)
                logits = torch.cat([logits_q, logits_i], dim=1)
                mask = torch.cat([torch.zeros(b, d2q.shape[1], dtype=torch.bool, device=u.device), eye], dim=1)
            term, w_neg = _weighted(logits, -cost, mask, uni_r, False)
            cr = cr + self.beta * term.mean()
        return ca / k, cr / k, w_pos, w_neg

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, tau_pos={self.tau_pos}, tau_neg={self.tau_neg}, "
                f"choice={self.choice!r}, detach_weights={self.detach_weights}")
