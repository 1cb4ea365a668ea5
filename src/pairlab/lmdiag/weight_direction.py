"""Gradient weight/direction decomposition: compare two objectives that train the same pair scores.

Idea from Dai et al., "Supervised Fine-Tuning or Contrastive Learning? Towards Better Multimodal LLM Reranking"
(2025). **Reconstruction** from the abstract's vocabulary and the chain rule (no official code known): for scores
``s_i = s_θ(q, d_i)`` of one query's candidates,

    ∇_θ L = Σ_i (∂L/∂s_i) ∇_θ s_i          weight  w_i = ∂L/∂s_i   (how hard pair i is pushed)
                                             direction ∇_θ s_i        (which score is differentiated)

Closed forms for a group ``{d+, d_1-, ..., d_K-}``:

* contrastive (InfoNCE, temperature τ): ``π = softmax(s / τ)``; ``w+ = -(1 - π+) / τ``, ``w_k = π_k / τ``
  (the negatives share the positive's weight: softmax dilution);
* classification (pointwise BCE on ``z_i``, e.g. logit(yes) - logit(no)): ``w_i = sigmoid(z_i) - y_i``, each pair
  weighted independently.

:func:`score_weights` computes any objective's weights by autograd (the reference the closed forms are tested
against); :func:`weight_direction_mix` builds the surrogate loss ``Σ_i stopgrad(w_i^A) s_i^B`` whose gradient is
objective A's weights times objective B's directions (the swap experiment). ``stopgrad`` is mandatory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pairlab._validate import check_embeddings, check_positive, check_tensor


def score_weights(loss_fn: Callable[[torch.Tensor], torch.Tensor], scores: torch.Tensor) -> torch.Tensor:
    """Per-score gradient weights ``∂L/∂s`` of ``loss_fn(scores)`` (scores detached first), same shape as scores."""
    s = check_tensor("scores", scores).detach().clone().requires_grad_(True)
    if not s.dtype.is_floating_point:
        raise TypeError(f"scores must be a floating tensor, got {s.dtype}")
    with torch.enable_grad():
        loss = loss_fn(s)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor")
        (g,) = torch.autograd.grad(loss, s, allow_unused=True)
    return torch.zeros_like(s) if g is None else g


def infonce_score_weights(scores: torch.Tensor, positive: torch.Tensor | int = 0, tau: float = 1.0) -> torch.Tensor:
    """Closed-form InfoNCE weights for groups ``scores [G, 1+K]`` with the positive at column ``positive``.

    Loss per group ``-log softmax(s / τ)[pos]``, summed over groups (divide by G for a mean).
    """
    s = check_embeddings("scores", scores, 2, "[G, 1+K]")
    tau = check_positive("tau", tau)
    pos = torch.as_tensor(positive, device=s.device).long().expand(s.shape[0])
    pi = torch.softmax(s / tau, dim=-1)
    onehot = F.one_hot(pos, s.shape[1]).to(pi.dtype)
    return (pi - onehot) / tau


def bce_score_weights(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Closed-form pointwise BCE weights ``sigmoid(z) - y`` (loss summed over pairs)."""
    z = check_tensor("logits", logits)
    y = check_tensor("labels", labels)
    if y.shape != z.shape:
        raise ValueError(f"labels must have the shape of logits {tuple(z.shape)}, got {tuple(y.shape)}")
    return torch.sigmoid(z) - y.to(z.dtype)


def weight_direction_mix(weights: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Surrogate ``Σ_i stopgrad(w_i) s_i``: its gradient is ``Σ_i w_i ∇ s_i`` (weights of one objective,
    directions of the scores ``s`` another objective differentiates)."""
    w = check_tensor("weights", weights)
    s = check_tensor("scores", scores)
    if w.shape != s.shape:
        raise ValueError(f"weights must have the shape of scores {tuple(s.shape)}, got {tuple(w.shape)}")
    return (w.detach().to(s.dtype) * s).sum()


def compare_weights(
    scores: torch.Tensor, labels: torch.Tensor, tau: float = 1.0
) -> dict[str, torch.Tensor]:
    """InfoNCE vs BCE weights on the same groups ``scores [G, 1+K]`` (positive in column 0, ``labels`` ignored
    beyond checking it marks column 0) — returns ``{"contrastive": [G, 1+K], "classification": [G, 1+K],
    "ratio": |w_cl| / |w_bce|}``; the BCE reads the same scores as logits."""
    s = check_embeddings("scores", scores, 2, "[G, 1+K]")
    y = check_tensor("labels", labels)
    if y.shape != s.shape or not bool((y[:, 0] == 1).all()) or bool((y[:, 1:] != 0).any()):
        raise ValueError("labels must be [G, 1+K] with 1 in column 0 (the positive) and 0 elsewhere")
    cl = infonce_score_weights(s, 0, tau)
    bce = bce_score_weights(s, y)
    return {"contrastive": cl, "classification": bce, "ratio": cl.abs() / bce.abs().clamp_min(1e-12)}
