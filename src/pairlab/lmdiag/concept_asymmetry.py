"""Concept-asymmetry score from concept activation vectors (CAVs): how much more a target concept aligns with one
reference concept than with another, read from a model's activations.

Idea from Gao et al., "Evaluate Bias without Manual Test Sets: a Concept Representation Perspective" (BiasLens,
2025). **Reconstruction** from the abstract and a secondary summary; the paper's sparse-autoencoder step is not
reproduced (the CAVs are compared directly). Per concept ``c`` and layer: a logistic-regression probe separates
activations of texts with the concept from general texts; the CAV is its unit weight vector. Then::

    asymmetry(t; r1, r2) = cos(C_t, C_r1) - cos(C_t, C_r2)      (signed; the bias magnitude is its |.|)

Report the probe accuracy of each CAV (near-chance layers should be excluded) and ``cos(C_r1, C_r2)`` (reference
concepts are often anti-correlated, e.g. "positive" vs "negative").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pairlab._validate import check_embeddings, check_same_dim


@dataclass
class CAV:
    """Unit concept direction ``vector [D]`` and the probe's training accuracy."""

    vector: torch.Tensor
    accuracy: float


def fit_cav(x_pos: torch.Tensor, x_neg: torch.Tensor, C: float = 1.0, max_iter: int = 1000) -> CAV:
    """Fit a CAV: logistic regression (scikit-learn, L2, ``C``) of ``x_pos [n, D]`` (concept) vs ``x_neg [m, D]``."""
    xp = check_embeddings("x_pos", x_pos, 2, "[n, D]")
    xn = check_embeddings("x_neg", x_neg, 2, "[m, D]")
    check_same_dim(("x_pos", "x_neg"), (xp, xn))
    from sklearn.linear_model import LogisticRegression

    x = torch.cat([xp, xn]).double().cpu().numpy()
    y = [1] * xp.shape[0] + [0] * xn.shape[0]
    clf = LogisticRegression(C=C, max_iter=max_iter).fit(x, y)
    w = torch.as_tensor(clf.coef_[0], dtype=torch.float64)
    norm = w.norm()
    if not norm > 0:
        raise ValueError("the CAV probe found no direction (zero weight vector); are x_pos and x_neg identical?")
    return CAV(w / norm, float(clf.score(x, y)))


def concept_asymmetry(
    cav_target: torch.Tensor | CAV, cav_ref1: torch.Tensor | CAV, cav_ref2: torch.Tensor | CAV
) -> dict[str, float]:
    """``{"asymmetry": cos(t, r1) - cos(t, r2), "abs_asymmetry", "cos_t_r1", "cos_t_r2", "cos_r1_r2"}``."""
    vs = []
    for name, c in (("cav_target", cav_target), ("cav_ref1", cav_ref1), ("cav_ref2", cav_ref2)):
        v = c.vector if isinstance(c, CAV) else c
        vs.append(check_embeddings(name, v.reshape(1, -1) if isinstance(v, torch.Tensor) else v, 2, "[D]").double())
    check_same_dim(("cav_target", "cav_ref1", "cav_ref2"), vs)
    t, r1, r2 = (v[0] for v in vs)

    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))

    c1, c2 = cos(t, r1), cos(t, r2)
    return {"asymmetry": c1 - c2, "abs_asymmetry": abs(c1 - c2), "cos_t_r1": c1, "cos_t_r2": c2,
            "cos_r1_r2": cos(r1, r2)}
