"""CWCL: continuously weighted contrastive loss (two towers, soft positives from a frozen tower).

Paper: Srinivasa et al. (Samsung), "CWCL: Cross-Modal Transfer with Continuously Weighted
Contrastive Loss", NeurIPS 2023. No official code is known; this follows the paper's formula as
recorded in the pairlab spec (methods-representation §14, tagged [paper/mem]).

Tower U is pre-trained and frozen (``a``, embeddings ``p``), tower V is trained (``b``, ``q``). With
``s_ij = p_i . q_j / tau`` (cosine) and intra-modal weights from the frozen tower
``w_ij = <p_i, p_j> / 2 + 1/2`` (in ``[0, 1]``, ``w_ii = 1``)::

    L_{U->V} = -(1/B) sum_i (1 / sum_j w_ij) sum_j w_ij log softmax_k(s_ik)[j]     # soft positives
    L_{V->U} = -(1/B) sum_i log softmax_k(q_i . p_k / tau)[i]                      # plain CLIP direction
    L        = L_{U->V} + reverse_weight * L_{V->U}

``L_{U->V}`` is the one equation (:func:`pairlab.nce.nce`) with soft targets ``P = w``; ``L_{V->U}`` is
the one equation with one-hot targets. The weights are computed under ``no_grad``.

Where the weights come from (first that applies):
    1. ``forward(a, b, weights=W)``: an explicit ``[B, B]`` matrix ``>= 0``.
    2. ``forward(a, b, frozen=F)``: embeddings ``F: [B, D']`` of a frozen model (any width); ``w`` is
       ``weight_fn`` of their cosine matrix.
    3. the input named by ``weights_from`` (``"a"``, default: the frozen tower of the paper; or
       ``"b"``), detached. This is how the training loop drives CWCL from ``z`` alone
       (``obj(z[:, 0], z[:, 1])``): the first view plays the frozen tower and the weights come from a
       stop-gradient copy of it; gradients still reach ``a`` through the scores, so freeze tower U
       yourself when you want the paper's setting (LiT-style).

Weight maps (``weight_fn``): ``"linear"`` (default, ``(cos + 1) / 2``), ``"exp"``
(``exp((cos - 1) / weight_temperature)``, sharper), or any callable ``cos [B, B] -> w [B, B] >= 0``.
With ``w = I`` the loss is twice open_clip's CLIP loss (which averages the two directions).

Defaults: ``tau = 0.07`` (CLIP-style; ``learnable_temperature=True`` learns ``log(1/tau)`` clamped
at 100), ``reverse_weight = 1``. Unverified: whether the paper sums or averages the two directions
(here: sum, weight exposed) and whether ``(cos + 1)/2`` is its exact map. Local batch only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pairlab._validate import (
    check_choice,
    check_embeddings,
    check_positive,
    check_same_batch,
    check_same_dim,
)
from pairlab.nce import nce
from pairlab.objectives.base import ContrastiveObjective
from pairlab.pairs import soft_targets
from pairlab.registry import register
from pairlab.scores import normalize, prepare

WEIGHT_FNS = ("linear", "exp")


@register("objectives", "cwcl", input="pair", paper="Srinivasa et al. 2023 (NeurIPS, CWCL)")
class CWCL(ContrastiveObjective):
    """Continuously weighted contrastive loss: soft positives ``U -> V``, CLIP ``V -> U``.

    Args:
        temperature: ``tau`` (0.07).
        weight_fn: ``"linear"``, ``"exp"`` or a callable on the frozen cosine matrix.
        weight_temperature: temperature of the ``"exp"`` map.
        reverse_weight: weight of the plain ``V -> U`` term (``0`` keeps only the CWCL direction).
        weights_from: which input supplies the weights when none are passed (``"a"`` or ``"b"``).
        learnable_temperature: learn ``log(1/tau)`` (clamped at 100).

    Examples:
        >>> frozen_img, text = torch.randn(64, 512), torch.randn(64, 512, requires_grad=True)
        >>> loss = CWCL()(frozen_img, text)
    """

    def __init__(
        self,
        temperature: float = 0.07,
        weight_fn: str | Callable[[torch.Tensor], torch.Tensor] = "linear",
        weight_temperature: float = 0.1,
        reverse_weight: float = 1.0,
        weights_from: str = "a",
        similarity: str = "cosine",
        learnable_temperature: bool = False,
        **kw,
    ):
        super().__init__(temperature, similarity, learnable_temperature=learnable_temperature, **kw)
        if not callable(weight_fn):
            check_choice("weight_fn", weight_fn, WEIGHT_FNS)
        self.weight_fn = weight_fn
        self.weight_temperature = check_positive("weight_temperature", weight_temperature)
        self.reverse_weight = float(reverse_weight)
        if not self.reverse_weight >= 0:
            raise ValueError(f"reverse_weight must be >= 0, got {reverse_weight}")
        self.weights_from = check_choice("weights_from", weights_from, ("a", "b"))

    @torch.no_grad()
    def weights(self, emb: torch.Tensor) -> torch.Tensor:
        """``w = weight_fn(cos(emb_i, emb_j))``: ``[B, D'] -> [B, B]`` (no gradient)."""
        e = normalize(emb.detach())
        cos = e @ e.T
        if self.weight_fn == "linear":
            w = cos / 2 + 0.5
        elif self.weight_fn == "exp":
            w = torch.exp((cos - 1.0) / self.weight_temperature)
        else:
            w = self.weight_fn(cos)
            if not isinstance(w, torch.Tensor):
                raise TypeError(f"weight_fn must return a tensor, got {type(w).__name__}")
        return soft_targets(w.clamp_min(0.0) if self.weight_fn == "linear" else w, *cos.shape, name="weights")

    def forward(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
        frozen: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``a: [B, D]`` frozen-tower (U) embeddings, ``b: [B, D]`` trained-tower (V) embeddings."""
        check_embeddings("a", a, 2, "[B, D]")
        check_embeddings("b", b, 2, "[B, D]")
        check_same_batch(("a", "b"), (a, b))
        check_same_dim(("a", "b"), (a, b))
        n = a.shape[0]
        if weights is not None:
            w = soft_targets(weights, n, n, name="weights").detach()
        elif frozen is not None:
            check_embeddings("frozen", frozen, 2, "[B, D']")
            check_same_batch(("a", "frozen"), (a, frozen))
            w = self.weights(frozen)
        else:
            w = self.weights(a if self.weights_from == "a" else b)
        scale = self.temperature.scale()
        p, q = prepare(a, self.similarity), prepare(b, self.similarity)
        dt = torch.promote_types(p.dtype, q.dtype)
        p, q = p.to(dt), q.to(dt)
        fwd = nce((p @ q.T) * scale, w.to(dt), on_no_positive=self.on_no_positive)
        if self.reverse_weight > 0:
            eye = torch.eye(n, dtype=torch.bool, device=a.device)
            rev = nce((q @ p.T) * scale, eye, on_no_positive=self.on_no_positive)
            fwd.loss = fwd.loss + self.reverse_weight * rev.loss
        with torch.no_grad():
            wn = w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
            ent = -(wn * torch.where(wn > 0, wn.log(), torch.zeros_like(wn))).sum(1)
            fwd.stats["effective_positives"] = float(ent.exp().mean())
        return self._record(fwd)

    def extra_repr(self) -> str:
        fn = self.weight_fn if isinstance(self.weight_fn, str) else getattr(self.weight_fn, "__name__", "callable")
        return f"tau={self.temperature.value:.4g}, weight_fn={fn!r}, reverse_weight={self.reverse_weight}"
