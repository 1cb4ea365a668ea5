"""Hardness-weighted negatives: score-derived importance weights on the partition.

Paper: Robinson, Chuang, Sra, Jegelka, "Contrastive Learning with Hard Negative Samples" (HCL), ICLR 2021;
official code ``joshr17/HCL`` (``image/main.py``: ``imp = (beta * neg.log()).exp()``,
``reweight_neg = (imp * neg).sum(-1) / imp.mean(-1)``). With ``s_ij`` the score the objective uses
(``sim / tau``)::

    W_ij = exp(beta s_ij) / mean_{k in neg(i)} exp(beta s_ik)      for negatives j of anchor i
    W_ij = 1                                                       for positives

so ``sum_{j in neg} W_ij exp(s_ij) = n_neg * E_q[exp(s)]`` under the tilted distribution
``q(j) ∝ exp(beta s_ij)``: harder negatives (higher score) weigh more, the mean weight over negatives is 1.
``beta = 0`` gives ``W = 1`` (plain InfoNCE). Computed in log-space (a softmax), never ``exp`` overflows.

Defaults: ``beta = 1.0`` (HCL sweeps 0.1 .. 2 on the ``sim/tau`` scale). Deviations: the weights are
constants (pairlab's weights protocol hands components detached scores); HCL's code lets gradients flow
through ``imp``. HCL's false-negative debiasing (``tau_plus``, a subtraction, not a weight) is not
included; use :class:`pairlab.objectives.dcl.DCL` for debiasing.
"""

from __future__ import annotations

import math

import torch

from pairlab.registry import register
from pairlab.weights.base import PairWeights, negatives_mask


@register("weights", "hardness", applies_to="partition", paper="Robinson et al. 2021 (HCL)")
class HardnessWeights(PairWeights):
    """``W = exp(beta s) / mean_neg exp(beta s)`` on negatives, 1 on positives.

    Args:
        beta: concentration on hard negatives (``>= 0``; 0 = uniform).
        normalize: divide by the mean over the anchor's negatives (HCL); ``False`` gives ``exp(beta s)``.
    """

    def __init__(self, beta: float = 1.0, normalize: bool = True):
        super().__init__()
        b = float(beta)
        if not (b >= 0) or math.isinf(b):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        self.beta, self.normalize = b, bool(normalize)

    def weights(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        neg = negatives_mask(targets, valid)
        logits = (self.beta * scores.detach()).masked_fill(~neg, float("-inf"))
        if self.normalize:
            n = neg.sum(dim=1, keepdim=True).to(scores.dtype)
            has = n > 0
            lse = torch.logsumexp(torch.where(has, logits, torch.zeros_like(logits)), dim=1, keepdim=True)
            logw = logits - lse + torch.log(n.clamp_min(1))
        else:
            logw = logits
        return torch.where(neg, torch.exp(logw), torch.ones_like(scores))

    def extra_repr(self) -> str:
        return f"beta={self.beta}, normalize={self.normalize}"
