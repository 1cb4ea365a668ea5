"""D2O — Distributional Dispreference Optimization (Duan et al., "Negating Negatives: Alignment with Human Negative
Samples via Distributional Dispreference Optimization", Findings of EMNLP 2024).

.. warning::
   **Unverified equation.** No official code is known. The loss below is taken from the paper's abstract and a
   third-party implementation (``agentsea/dark.rl``, ``src/dark/loss/d2o.py``); it has not been checked against
   the paper's text. Treat the name as provisional until it is.

Data: prompts with only human *dispreferred* responses ``y_l``, plus ``K`` self-generated anchor responses
``y_1..y_K ~ π_ref(.|x)`` (sampled once, cached). With sequence log-probabilities (sum over response tokens)::

    u = beta * mean_k [ logp(π_θ, y_k) - logp(π_r-, y_k) ]        # anchors: keep their likelihood
    v = alpha *        [ logp(π_θ, y_l) - logp(π_r+, y_l) ]        # negatives: push down
    L = -mean log sigmoid(u - v)

``π_r-`` and ``π_r+`` are reference models (both the frozen SFT model by default). At initialisation
(policy = references) ``L = ln 2``. Third-party defaults: ``K = 11``, ``alpha = beta = 0.1``.

Deviation flag: the third-party code applies ``beta / K`` to an already K-averaged quantity (a double
normalisation); ``official_3p=True`` reproduces it (``u = (beta / K) * mean_k``). The default follows the
equation as stated (``beta`` times the mean over K).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairlab._validate import check_positive, check_tensor


def d2o_loss(
    logp_anchor: torch.Tensor,
    ref_anchor: torch.Tensor,
    logp_negative: torch.Tensor,
    ref_negative: torch.Tensor,
    alpha: float = 0.1,
    beta: float = 0.1,
    official_3p: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """D2O loss.

    Args:
        logp_anchor: ``[B, K]`` policy log-probs of the K self-generated anchors.
        ref_anchor: ``[B, K]`` their log-probs under ``π_r-`` (no grad).
        logp_negative: ``[B]`` policy log-probs of the dispreferred response.
        ref_negative: ``[B]`` its log-prob under ``π_r+`` (no grad).
        alpha, beta: weights of the negative and anchor terms.
        official_3p: reproduce the third-party double normalisation (``beta / K`` on the K-mean).
        reduction: ``mean | sum | none``.
    """
    la, ra = check_tensor("logp_anchor", logp_anchor), check_tensor("ref_anchor", ref_anchor)
    ln, rn = check_tensor("logp_negative", logp_negative), check_tensor("ref_negative", ref_negative)
    if la.ndim != 2 or ra.shape != la.shape:
        raise ValueError(f"logp_anchor, ref_anchor must share shape [B, K], got {tuple(la.shape)}, {tuple(ra.shape)}")
    if ln.shape != (la.shape[0],) or rn.shape != ln.shape:
        raise ValueError(
            f"logp_negative and ref_negative must have shape [{la.shape[0]}], got {tuple(ln.shape)}, {tuple(rn.shape)}"
        )
    alpha, beta = check_positive("alpha", alpha), check_positive("beta", beta)
    k = la.shape[1]
    scale = beta / k if official_3p else beta
    u = scale * (la - ra).mean(1)
    v = alpha * (ln - rn)
    loss = -F.logsigmoid(u - v)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be one of ['mean', 'sum', 'none'], got {reduction!r}")
