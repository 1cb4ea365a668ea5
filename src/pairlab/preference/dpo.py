"""DPO — Direct Preference Optimization (Rafailov et al., NeurIPS 2023), the reference point of the preference module.

With sequence log-probabilities (see :mod:`pairlab.preference.logprob`) of the chosen ``y_w`` and rejected ``y_l``
responses under the policy and a frozen reference::

    h = beta * ((logp_w - ref_w) - (logp_l - ref_l))
    L = -(1 - eps) log sigmoid(h) - eps log sigmoid(-h)          # eps = label_smoothing (cDPO); default 0

At initialisation (policy = reference) ``L = ln 2``. Defaults: ``beta = 0.1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairlab._validate import check_positive, check_tensor


def dpo_loss(
    logp_chosen: torch.Tensor,
    logp_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """DPO loss from ``[B]`` sequence log-probabilities; ``reduction`` in ``mean | sum | none``."""
    ts = [check_tensor(n, t) for n, t in (("logp_chosen", logp_chosen), ("logp_rejected", logp_rejected),
                                          ("ref_chosen", ref_chosen), ("ref_rejected", ref_rejected))]
    if any(t.shape != ts[0].shape for t in ts) or ts[0].ndim != 1:
        raise ValueError(f"all log-probabilities must have one shape [B], got {[tuple(t.shape) for t in ts]}")
    beta = check_positive("beta", beta)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    h = beta * ((ts[0] - ts[2]) - (ts[1] - ts[3]))
    loss = -(1.0 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be one of ['mean', 'sum', 'none'], got {reduction!r}")
