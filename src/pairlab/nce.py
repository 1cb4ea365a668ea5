"""The one equation, dense reference path (DESIGN §1).

For anchors ``i`` and candidates ``j`` with scores ``s_ij = sim(a_i, c_j) / tau``::

    loss_i = - sum_j p_ij * s_ij + log sum_k V_ik * W_ik * exp(s_ik),     p_i = P_i / sum_j P_ij

``aggregation="mean_log"`` is the formula above (SupCon's L_out: the mean over positives of the
log-probability). ``aggregation="log_mean"`` is SupCon's L_in: ``-log(sum_j p_ij exp(s_ij)) + log Z_i``,
the log of the mean positive probability. ``decoupled=True`` sets ``W = 0`` on positives (DCL).

Everything is computed in log-space: weights enter as ``log W`` (``-inf`` where ``W = 0``) inside a
masked logsumexp; nothing is ever ``log(x + eps)``. An anchor with no positive (or no candidate left in
its partition) is excluded from the mean and counted in ``stats``; a batch where no anchor has a
positive raises by default (``on_no_positive="raise"``) or returns an exact, graph-connected zero
(``"zero"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pairlab._validate import check_choice, check_tensor

AGGREGATIONS = ("mean_log", "log_mean")
REDUCTIONS = ("mean", "sum", "none")
ON_NO_POSITIVE = ("raise", "zero")


@dataclass
class NCEResult:
    """Output of :func:`nce`: the reduced loss, per-anchor values and statistics."""

    loss: torch.Tensor
    per_anchor: torch.Tensor
    used: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def _check_matrix(name: str, x: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor | None:
    if x is None:
        return None
    check_tensor(name, x)
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape [{shape[0]}, {shape[1]}] like scores, got {tuple(x.shape)}")
    return x


def nce(
    scores: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    *,
    aggregation: str = "mean_log",
    decoupled: bool = False,
    on_no_positive: str = "raise",
    reduction: str = "mean",
) -> NCEResult:
    """The core equation on a dense score matrix.

    Args:
        scores: ``[N, M]`` scores ``s_ij`` (already divided by the temperature).
        targets: ``[N, M]`` positive targets ``P_ij >= 0`` (bool or float; soft targets allowed).
        valid: ``[N, M]`` bool, the comparisons that exist (``V``); default all. Positives outside
            ``V`` are ignored.
        weights: ``[N, M]`` weights ``W_ij >= 0`` of candidates in the partition; default 1.
        aggregation: ``"mean_log"`` (SupCon L_out, default) or ``"log_mean"`` (SupCon L_in).
        decoupled: exclude positives from the partition (``W = 0`` on ``P > 0``), as in DCL.
        on_no_positive: ``"raise"`` or ``"zero"`` when no anchor in the batch has a positive.
        reduction: ``"mean"`` over anchors used, ``"sum"``, or ``"none"`` (``[N]``, 0 where unused).
    """
    check_tensor("scores", scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [N, M], got {tuple(scores.shape)}")
    check_choice("aggregation", aggregation, AGGREGATIONS)
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("on_no_positive", on_no_positive, ON_NO_POSITIVE)
    shape = (scores.shape[0], scores.shape[1])
    _check_matrix("targets", targets, shape)
    _check_matrix("valid", valid, shape)
    _check_matrix("weights", weights, shape)

    s = scores if scores.dtype in (torch.float32, torch.float64) else scores.float()
    p = targets.to(s.dtype)
    if valid is not None:
        p = p * valid.to(s.dtype)
    pos_mask = p > 0
    psum = p.sum(dim=1)

    # partition logits: s + log W on V, -inf elsewhere
    part = s
    if weights is not None:
        w = weights.to(s.dtype)
        if bool((w < 0).any()):
            raise ValueError("weights must be >= 0")
        part = part + torch.log(w)  # log(0) = -inf excludes the column exactly
    keep = torch.ones_like(pos_mask) if valid is None else valid.to(torch.bool)
    if decoupled:
        keep = keep & ~pos_mask
    part = part.masked_fill(~keep, float("-inf"))
    has_candidate = torch.isfinite(part).any(dim=1)
    has_pos = psum > 0
    used = has_pos & has_candidate
    n_used = int(used.sum())

    # rows not used are neutralised before logsumexp so no NaN reaches the backward
    part = torch.where(used[:, None], part, torch.zeros_like(part))
    log_z = torch.logsumexp(part, dim=1)
    psafe = torch.where(used, psum, torch.ones_like(psum))
    if aggregation == "mean_log":
        pos_term = (p * torch.where(pos_mask, s, torch.zeros_like(s))).sum(dim=1) / psafe
    else:
        logp = torch.where(pos_mask & used[:, None], torch.log(p), torch.full_like(s, float("-inf")))
        logp = torch.where(used[:, None], logp, torch.zeros_like(s))
        pos_term = torch.logsumexp(s + logp, dim=1) - torch.log(psafe)
    per_anchor = torch.where(used, log_z - pos_term, torch.zeros_like(log_z))

    stats: dict[str, float] = {
        "anchors": float(shape[0]),
        "anchors_used": float(n_used),
        "anchors_without_positive": float(int((~has_pos).sum())),
        "anchors_without_candidate": float(int((has_pos & ~has_candidate).sum())),
        "positives_per_anchor": float(pos_mask.sum()) / max(shape[0], 1),
    }
    with torch.no_grad():
        neg_mask = keep & ~pos_mask
        if bool(pos_mask.any()):
            stats["pos_score_mean"] = float(s[pos_mask].mean())
        if bool(neg_mask.any()):
            stats["neg_score_mean"] = float(s[neg_mask].mean())

    if n_used == 0:
        if on_no_positive == "raise":
            raise ValueError(
                "no anchor in the batch has a positive (and a candidate): the loss is undefined. "
                "Check labels/ids, or pass on_no_positive='zero' to get an explicit zero loss."
            )
        loss = (s * 0.0).sum()
        return NCEResult(loss if reduction != "none" else per_anchor, per_anchor, used, stats)

    if reduction == "mean":
        loss = per_anchor.sum() / n_used
    elif reduction == "sum":
        loss = per_anchor.sum()
    else:
        loss = per_anchor
    return NCEResult(loss, per_anchor, used, stats)
