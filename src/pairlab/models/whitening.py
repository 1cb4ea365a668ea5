"""Shuffled group whitening (SGW) from WhitenedCSE, usable on any embedding ``[B, D]``.

Paper: Zhuo, Sun, Wang, Zhu, Yang, "WhitenedCSE: Whitening-based Contrastive Learning of Sentence
Embeddings", ACL 2023 (arXiv 2305.17746). Official code: ``SupstarZh/WhitenedCSE``
(``whitenedcse/shuffled_group_whitening.py``), which does not run as released; this follows the paper.

Training mode, for an input ``h: [B, D]`` (one view; call once per view so each view gets its own shuffle)::

    pi  = randperm(D)                                  # a new channel shuffle per call
    X   = h[:, pi].view(B, G, D/G);  X = X - mean_batch(X)
    S_g = X_g^T X_g / B  = U diag(lambda) U^T         # biased covariance per group (eigh, float32+)
    Y_g = X_g U diag((lambda + eps)^-1/2) U^T          # ZCA whitening
    out = Y.reshape(B, D)[:, argsort(pi)]             # undo the shuffle

Eval mode returns the input unchanged (the paper embeds sentences without SGW/MLP). ``num_groups=None``
gives ``G = ceil(2D / B)`` per call (official); ``G = 1`` disables shuffling (official). Choices (spec §7(c)):
``eps = 1e-5`` (the official code has none and returns inf on rank-deficient groups);
``detach_whitening_matrix=True`` (default) computes W from a detached covariance like the official code;
False backpropagates through the ZCA matrix. Group size must be below the batch size.

Examples:
    >>> sgw = ShuffledGroupWhitening(num_groups=8)
    >>> views = [sgw(h1), sgw(h2), sgw(h3)]    # different shuffles: positive diversity
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pairlab._validate import check_embeddings


class ShuffledGroupWhitening(nn.Module):
    """Shuffled group ZCA whitening over the batch (training only).

    Args:
        num_groups: ``G``, must divide ``D`` (official 128 for D = 768); None = ``ceil(2D / B)`` per call.
        shuffle: shuffle channels before grouping (forced off when ``G = 1``).
        eps: added to the eigenvalues.
        detach_whitening_matrix: compute W from a detached covariance (official behaviour).
    """

    def __init__(
        self,
        num_groups: int | None = None,
        shuffle: bool = True,
        eps: float = 1e-5,
        detach_whitening_matrix: bool = True,
    ):
        super().__init__()
        if num_groups is not None and (not isinstance(num_groups, int) or num_groups < 1):
            raise ValueError(f"num_groups must be an integer >= 1 or None, got {num_groups!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.num_groups, self.shuffle, self.eps = num_groups, bool(shuffle), float(eps)
        self.detach_whitening_matrix = bool(detach_whitening_matrix)

    def _groups(self, b: int, d: int) -> int:
        g = self.num_groups if self.num_groups is not None else math.ceil(2 * d / b)
        if d % g:
            raise ValueError(f"num_groups={g} must divide the embedding dim D={d} (h: [{b}, {d}])")
        if d // g >= b:
            raise ValueError(f"group size D/G = {d // g} must be below the batch size {b} (h: [{b}, {d}]); "
                             "use more groups or a larger batch")
        return g

    def forward(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``h: [B, D] -> [B, D]`` whitened per shuffled group (identity in eval mode)."""
        check_embeddings("h", h, 2, "[B, D]", min_rows=2)
        if not self.training:
            return h
        b, d = h.shape
        g = self._groups(b, d)
        dt = torch.float64 if h.dtype == torch.float64 else torch.float32
        x = h.to(dt)
        perm = None
        if self.shuffle and g > 1:
            perm = torch.randperm(d, generator=generator, device="cpu").to(h.device)
            x = x[:, perm]
        x = x.view(b, g, d // g).transpose(0, 1)  # [G, B, d/G]
        x = x - x.mean(dim=1, keepdim=True)
        cov = x.transpose(1, 2) @ x / b  # [G, d/G, d/G]
        if self.detach_whitening_matrix:
            cov = cov.detach()
        evals, evecs = torch.linalg.eigh(cov)
        w = evecs @ torch.diag_embed((evals.clamp_min(0) + self.eps).rsqrt()) @ evecs.transpose(1, 2)
        y = (x @ w).transpose(0, 1).reshape(b, d)
        if perm is not None:
            y = y[:, torch.argsort(perm)]
        return y.to(h.dtype) if h.dtype in (torch.float16, torch.bfloat16) else y

    def extra_repr(self) -> str:
        return (f"num_groups={self.num_groups}, shuffle={self.shuffle}, eps={self.eps}, "
                f"detach_whitening_matrix={self.detach_whitening_matrix}")
