"""CLAPS: latent adversarial pairs — a small loss-raising step (hard negative) and a large step kept
semantically close (hard positive), on any differentiable encoder's hidden states.

Paper: Lee, Lee, Hwang, "Contrastive Learning with Adversarial Perturbations for Conditional Text Generation",
ICLR 2021. Official code ``seanie12/CLAPS`` (``src/summarization/models.py``: ``generate_adv``,
``generate_cont_adv``). On hidden states ``H [..., d]`` (per-token L2 normalisation over ``d``, ``+1e-12``)::

    hard negative ("imposter"):  g  = grad_H NLL(H)                    H_neg = H + eps_neg g / ||g||
    hard positive ("distant"):   g1 = grad_H L_contrast(H)             H1    = H + eps_pos g1 / ||g1||
                                 g2 = grad_H1 KL(p(H) || p(H1))        H_pos = H1 - eps_pos g2 / ||g2||

(eps_neg 1.0 summarisation/QG, 3.0 NMT; eps_pos 3.0). Directions are taken on detached copies with
``torch.autograd.grad`` (parameters' ``.grad`` untouched); the perturbations are constants added to ``H``, so
gradients reach the encoder through ``H_pos``, ``H_neg`` as in the official code. Loss (:func:`claps_loss`)::

    sim = cos(doc_i, tgt_j) [B, B];  adv = cos(doc_i, neg_i);  pos = cos(doc_i, pos_i)
    L = 1/2 [CE([sim, adv] / tau, i) + CE([sim with diagonal -> pos, adv] (/ tau), i)]       tau = 0.1

The official code omits ``/tau`` on the second term in all three tasks: ``scale_second_term=False`` is the
faithful default, ``True`` the consistent variant.

As candidates (:class:`LatentAdversarialPairs`, for ``z [B, K, D]`` embeddings with a ``head`` mapping ``D``
to class/token logits): view ``source_view`` is the source, ``target_view`` the target ``H``; NLL is
``CE(head(H), labels)`` (the head's own argmax without labels), ``L_contrast`` is InfoNCE source -> target,
and KL compares ``head`` distributions. ``H_neg`` are ``extra`` rows visible only to their own sample's
anchors (the official per-anchor ``adv`` column); ``H_pos`` is appended as view ``K``.

In ``pairlab train`` (images/vectors, no task head): :meth:`LatentAdversarialPairs.setup` gives it a frozen
:class:`PrototypeHead` when ``head`` is None: ``C`` spherical k-means prototypes of the initial (random-init)
encoder's embeddings of the training set (``C`` = the number of classes, 10 when unlabelled; ``head_clusters``
overrides), logits ``cos(h, c) / 0.1``. The "NLL" is then the cross-entropy to the head's own argmax (a
pseudo-label, never the class labels: ``use_labels=False``), so the imposter is pushed towards another cluster
and the distant positive keeps its cluster distribution (KL), the analogue of keeping the token distribution.
Deviation: the official code perturbs decoder hidden states and reads them through the LM head and a
projection; here the perturbed ``H`` is the embedding ``z`` the objective compares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pairlab._validate import check_embeddings, check_positive, check_same_batch
from pairlab.candidates.base import CandidateGenerator, Candidates, check_views
from pairlab.registry import register
from pairlab.scores import normalize


def _unit(g: torch.Tensor) -> torch.Tensor:
    return g / (g.norm(dim=-1, keepdim=True) + 1e-12)


def latent_adversarial_pairs(
    h: torch.Tensor,
    nll_fn: Callable[[torch.Tensor], torch.Tensor],
    contrast_fn: Callable[[torch.Tensor], torch.Tensor],
    kl_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    eps_neg: float = 1.0,
    eps_pos: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H_pos, H_neg)`` for hidden states ``h [..., d]`` (see the module docstring).

    ``nll_fn(H)`` and ``contrast_fn(H)`` are scalar losses of the hidden states; ``kl_fn(H, H1)`` the scalar
    divergence of the model's output distribution at ``H1`` from the one at ``H`` (``H`` given detached).
    """
    if not isinstance(h, torch.Tensor) or not h.dtype.is_floating_point:
        raise TypeError(f"h must be a floating tensor [..., d], got {type(h).__name__}")
    eps_neg, eps_pos = check_positive("eps_neg", eps_neg), check_positive("eps_pos", eps_pos)
    with torch.enable_grad():
        hd = h.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(nll_fn(hd), hd)
        hd = h.detach().requires_grad_(True)
        (g1,) = torch.autograd.grad(contrast_fn(hd), hd)
        step1 = eps_pos * _unit(g1)
        h1 = (h.detach() + step1).requires_grad_(True)
        (g2,) = torch.autograd.grad(kl_fn(h.detach(), h1), h1)
    h_neg = h + eps_neg * _unit(g)
    h_pos = h + (step1 - eps_pos * _unit(g2))
    return h_pos, h_neg


def claps_loss(doc: torch.Tensor, tgt: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
               temperature: float = 0.1, scale_second_term: bool = False) -> torch.Tensor:
    """The official CLAPS contrastive loss on pooled ``[B, d]`` source, target, positive and imposter."""
    for name, x in (("doc", doc), ("tgt", tgt), ("pos", pos), ("neg", neg)):
        check_embeddings(name, x, 2, "[B, d]")
    check_same_batch(("doc", "tgt", "pos", "neg"), (doc, tgt, pos, neg))
    tau = check_positive("temperature", temperature)
    d, t = normalize(doc), normalize(tgt)
    sim = d @ t.T
    adv = (d * normalize(neg)).sum(-1, keepdim=True)
    p = (d * normalize(pos)).sum(-1)
    target = torch.arange(doc.shape[0], device=doc.device)
    l1 = F.cross_entropy(torch.cat([sim, adv], 1) / tau, target)
    sim2 = sim.clone()
    sim2[target, target] = p
    logits2 = torch.cat([sim2, adv], 1)
    l2 = F.cross_entropy(logits2 / tau if scale_second_term else logits2, target)
    return 0.5 * (l1 + l2)


class PrototypeHead(nn.Module):
    """Frozen logits ``cos(h, c_j) / temperature`` over prototypes ``c [C, D]`` (a head for unlabelled data)."""

    centroids: torch.Tensor

    def __init__(self, centroids: torch.Tensor, temperature: float = 0.1):
        super().__init__()
        check_embeddings("centroids", centroids, 2, "[C, D]")
        self.register_buffer("centroids", normalize(centroids.detach().float()))
        self.temperature = check_positive("temperature", temperature)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return normalize(h) @ self.centroids.to(h.dtype).T / self.temperature


@register("candidates", "claps", paper="Lee et al. 2021 (CLAPS, ICLR)", needs=["head"],
          summary="latent adversarial pairs: imposter negatives (extra) and distant positives (views)")
class LatentAdversarialPairs(CandidateGenerator):
    """CLAPS perturbations of the target view as candidates.

    Args:
        head: ``nn.Module`` mapping ``[*, D]`` to logits (classifier / LM head); required at call time.
        eps_neg, eps_pos: step sizes (official 1.0 and 3.0).
        temperature: ``tau`` of the contrastive direction (official 0.1).
        source_view, target_view: which views play the source (document) and the target.
        use_labels: use the given ``labels`` as the NLL targets (else the head's argmax).
        head_clusters: prototypes of the head :meth:`setup` builds (default: number of classes, or 10).
    """

    def __init__(self, head: nn.Module | None = None, eps_neg: float = 1.0, eps_pos: float = 3.0,
                 temperature: float = 0.1, source_view: int = 0, target_view: int = 1, use_labels: bool = True,
                 head_clusters: int | None = None):
        super().__init__()
        self.head = head
        self.use_labels = bool(use_labels)
        if head_clusters is not None and (not isinstance(head_clusters, int) or head_clusters < 2):
            raise ValueError(f"head_clusters must be an integer >= 2, got {head_clusters!r}")
        self.head_clusters = head_clusters
        self.eps_neg, self.eps_pos = check_positive("eps_neg", eps_neg), check_positive("eps_pos", eps_pos)
        self.temperature = check_positive("temperature", temperature)
        self.source_view, self.target_view = int(source_view), int(target_view)

    def setup(self, context: Any) -> None:
        """``pairlab train`` hook: without a ``head``, a frozen :class:`PrototypeHead` (module docstring)."""
        if self.head is not None:
            return
        from pairlab.weights.meow import spherical_kmeans

        z = context.encode_dataset()
        k = self.head_clusters
        if k is None:
            lab = context.labels
            k = int(lab.unique().numel()) if lab is not None and bool((lab >= 0).any()) else 10
        k = max(2, min(k, z.shape[0]))
        cent, _ = spherical_kmeans(z.float(), k, seed=context.seed)
        self.head = PrototypeHead(cent).to(context.device)
        self.use_labels = False

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> Candidates:
        z, labels = check_views(z, labels, min_views=2)
        if not self.use_labels:
            labels = None
        if self.head is None:
            raise ValueError("LatentAdversarialPairs needs head=: a module mapping [*, D] embeddings to logits")
        if z.dtype in (torch.float16, torch.bfloat16):  # steps and scores in float32 (DESIGN §4)
            z = z.float()
        b, k, d = z.shape
        src, tgt = z[:, self.source_view], z[:, self.target_view]
        head, tau = self.head, self.temperature
        y = labels if labels is not None else head(tgt.detach()).argmax(-1).detach()
        srcn = normalize(src.detach())

        def nll(h: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(head(h), y)

        def contrast(h: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(srcn @ normalize(h).T / tau, torch.arange(b, device=z.device))

        def kl(h0: torch.Tensor, h1: torch.Tensor) -> torch.Tensor:
            p = F.log_softmax(head(h0), -1).detach()
            return F.kl_div(F.log_softmax(head(h1), -1), p, log_target=True, reduction="sum") / b

        h_pos, h_neg = latent_adversarial_pairs(tgt, nll, contrast, kl, self.eps_neg, self.eps_pos)
        views = torch.cat([z, h_pos[:, None, :]], dim=1)
        mask = torch.arange(b, device=z.device).repeat_interleave(k + 1)[:, None] == torch.arange(b, device=z.device)
        return Candidates(extra=h_neg, views=views, mask=mask).validate(z)
