"""Similarity functions and temperature / logit scale (DESIGN §1: ``s_ij = sim(a_i, c_j) / tau``).

Scores are always computed in float32 or wider, even when the embeddings are float16/bfloat16
(for instance under autocast), so reductions never run in half precision.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pairlab._validate import check_choice, check_positive

SIMILARITIES = ("cosine", "dot")


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (never half precision for scores)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L2-normalise the last dim after upcasting to float32/64.

    ``eps`` is applied to the norm; 1e-6 is representable in float16, unlike 1e-12.
    A zero row stays a zero row (its similarities are 0) with a zero gradient, never NaN or inf.
    """
    x = x.to(compute_dtype(x))
    norm = x.norm(dim=-1, keepdim=True)
    big = norm > eps
    # rows with norm <= eps map to 0 with a zero gradient (x / eps would send g / eps back: inf in float16)
    return torch.where(big, x / torch.where(big, norm, torch.ones_like(norm)), torch.zeros_like(x))


def prepare(x: torch.Tensor, similarity: str) -> torch.Tensor:
    """Embeddings ready for a dot product: normalised for cosine, upcast for dot."""
    check_choice("similarity", similarity, SIMILARITIES)
    if similarity == "cosine":
        return normalize(x)
    return x.to(compute_dtype(x))


def similarity_matrix(a: torch.Tensor, c: torch.Tensor, similarity: str = "cosine") -> torch.Tensor:
    """``sim(a_i, c_j)`` for all pairs: ``[N, D] x [M, D] -> [N, M]`` in float32 or float64."""
    a, c = prepare(a, similarity), prepare(c, similarity)
    dt = torch.promote_types(a.dtype, c.dtype)
    return a.to(dt) @ c.to(dt).T


class Temperature(nn.Module):
    """Temperature ``tau`` (fixed) or a learnable logit scale ``1/tau`` clamped to ``max_scale``.

    Args:
        temperature: initial ``tau`` (> 0).
        learnable: learn ``log(1/tau)`` as in CLIP.
        max_scale: clamp of the learnable scale ``1/tau`` (CLIP uses 100).

    ``scale()`` returns ``1/tau`` as a tensor; multiply similarities by it.
    """

    def __init__(self, temperature: float = 0.1, learnable: bool = False, max_scale: float = 100.0):
        super().__init__()
        t = check_positive("temperature", temperature)
        self.learnable = learnable
        self.max_scale = check_positive("max_scale", max_scale)
        if learnable:
            self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / t)))
        else:
            # float64 so a fixed 1/tau is exact for float64 inputs (a 0-dim tensor does not upcast fp32 scores)
            self.register_buffer("log_scale", torch.tensor(math.log(1.0 / t), dtype=torch.float64), persistent=False)

    def scale(self) -> torch.Tensor:
        ls = self.log_scale
        if self.learnable:
            ls = ls.clamp(max=math.log(self.max_scale))
        return ls.exp()

    @property
    def value(self) -> float:
        return float(1.0 / self.scale().detach())

    def extra_repr(self) -> str:
        return f"tau={self.value:.4g}, learnable={self.learnable}"
