"""Bradley-Terry pairwise preference with ties, and P2C's classifier/preference consistency hinges.

Paper: Kim, Shin, Kang, "Prefer to Classify: Improving Text Classifiers via Auxiliary Preference Learning",
ICML 2023; code ``minnesotanlp/p2c`` (``src/train_ext.py``, ``model.py``).

Bradley-Terry: ``P(x1 ≻ x2) = exp r1 / (exp r1 + exp r2) = sigmoid(r1 - r2)``. Preference labels follow P2C:
``pref = 1``: x1 ≻ x2, ``pref = 0``: x2 ≻ x1, ``pref = 2``: tie, whose target is ``tie_target`` (0.5)::

    t = {1: 1, 0: 0, 2: tie_target}[pref]
    L_BT = mean( -t log sigmoid(r1 - r2) - (1 - t) log sigmoid(r2 - r1) )

computed with ``logsigmoid`` (P2C's code takes ``log(p + 1e-8)`` of a softmax; identical up to that epsilon).
P2C's rewards pass through ``tanh`` (bounded BT confidence in [0.12, 0.88]); that belongs to the head, not here.

Consistency between a classifier and the preference (P2C, generative/subjective labels), with
``Δ = p(y|x1) - p(y|x2)`` the difference of the probabilities of the pair's shared label::

    L_cons = mean( [pref=1] relu(-Δ) + [pref=0] relu(Δ) + [tie] |Δ| )

and the extractive variant on per-class soft labels ``s`` (annotator vote fractions)::

    Δs = s1 - s2, Δp = p(.|x1) - p(.|x2);  L = mean_i Σ_c ( [Δs>=0] relu(Δs - Δp) + [Δs<0] relu(Δp - Δs) )
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairlab._validate import check_choice, check_tensor

PREF_X2, PREF_X1, PREF_TIE = 0, 1, 2
REDUCTIONS = ("mean", "sum", "none")


def _check_pref(pref: object, n: torch.Size) -> torch.Tensor:
    p = check_tensor("pref", pref)
    if p.dtype.is_floating_point or p.dtype == torch.bool:
        raise TypeError(f"pref must be an integer tensor with values in {{0, 1, 2}}, got dtype {p.dtype}")
    if p.shape != n:
        raise ValueError(f"pref must have shape {tuple(n)}, got {tuple(p.shape)}")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) > 2):
        raise ValueError(f"pref values must be 0 (x2 ≻ x1), 1 (x1 ≻ x2), 2 (tie); got [{int(p.min())}, {int(p.max())}]")
    return p


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    check_choice("reduction", reduction, REDUCTIONS)
    return x.mean() if reduction == "mean" else (x.sum() if reduction == "sum" else x)


def bt_probability(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """``P(x1 ≻ x2) = sigmoid(r1 - r2)``."""
    return torch.sigmoid(r1 - r2)


def bt_pair_loss(
    r1: torch.Tensor, r2: torch.Tensor, pref: torch.Tensor, tie_target: float = 0.5, reduction: str = "mean"
) -> torch.Tensor:
    """Bradley-Terry cross-entropy with ties (see module docstring). ``r1, r2, pref: [N]``."""
    r1, r2 = check_tensor("r1", r1), check_tensor("r2", r2)
    if r1.shape != r2.shape or r1.ndim != 1:
        raise ValueError(f"r1 and r2 must both have shape [N], got {tuple(r1.shape)} and {tuple(r2.shape)}")
    if not 0.0 <= float(tie_target) <= 1.0:
        raise ValueError(f"tie_target must lie in [0, 1], got {tie_target}")
    p = _check_pref(pref, r1.shape)
    d = (r1 - r2).to(torch.promote_types(r1.dtype, torch.float32))
    t = torch.where(p == PREF_X1, 1.0, torch.where(p == PREF_X2, 0.0, float(tie_target))).to(d)
    loss = -(t * F.logsigmoid(d) + (1.0 - t) * F.logsigmoid(-d))
    return _reduce(loss, reduction)


def pair_consistency_hinge(delta: torch.Tensor, pref: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """P2C consistency ``[pref=1] relu(-Δ) + [pref=0] relu(Δ) + [tie] |Δ|`` with ``Δ = p(y|x1) - p(y|x2)`` ``[N]``."""
    d = check_tensor("delta", delta)
    if d.ndim != 1:
        raise ValueError(f"delta must have shape [N], got {tuple(d.shape)}")
    p = _check_pref(pref, d.shape)
    loss = torch.where(p == PREF_X1, F.relu(-d), torch.where(p == PREF_X2, F.relu(d), d.abs()))
    return _reduce(loss, reduction)


def soft_pair_consistency(
    s1: torch.Tensor, s2: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """P2C extractive consistency on soft labels ``s1, s2`` and predicted probabilities ``p1, p2``, all ``[N, C]``.

    Per pair: ``Σ_c [Δs>=0] relu(Δs - Δp) + [Δs<0] relu(Δp - Δs)``: the predicted gap must be at least as
    large as the annotated one, in its direction.
    """
    ts = [check_tensor(n, t) for n, t in (("s1", s1), ("s2", s2), ("p1", p1), ("p2", p2))]
    if any(t.shape != ts[0].shape for t in ts) or ts[0].ndim != 2:
        raise ValueError(f"s1, s2, p1, p2 must share one shape [N, C], got {[tuple(t.shape) for t in ts]}")
    ds, dp = ts[0] - ts[1], ts[2] - ts[3]
    loss = torch.where(ds >= 0, F.relu(ds - dp), F.relu(dp - ds)).sum(-1)
    return _reduce(loss, reduction)
