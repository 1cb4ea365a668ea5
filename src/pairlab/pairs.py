"""P (positive targets) and V (valid comparisons) builders (DESIGN §1).

All builders return dense ``[N, M]`` tensors for the dense reference path; the tiled kernel in
:mod:`pairlab.kernels` uses the *structured* descriptions (ids, labels) instead and never builds them.

Layout convention: multi-view embeddings ``z: [B, K, D]`` are flattened sample-major, so flat row
``b * K + k`` is view ``k`` of sample ``b`` (see :func:`flatten_views`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pairlab._validate import check_embeddings, check_labels, check_tensor


def flatten_views(z: torch.Tensor, name: str = "z") -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, K, D] -> ([B*K, D], sample ids [B*K])``, sample-major."""
    check_embeddings(name, z, 3, "[B, K, D]", check_finite=False)
    b, k, d = z.shape
    ids = torch.arange(b, device=z.device).repeat_interleave(k)
    return z.reshape(b * k, d), ids


def same_id(ids_a: torch.Tensor, ids_c: torch.Tensor) -> torch.Tensor:
    """``P_ij = [ids_a[i] == ids_c[j]]`` as a bool ``[N, M]`` matrix (instance or label equality)."""
    return ids_a[:, None] == ids_c[None, :]


def not_self(n: int, m: int | None = None, offset: int = 0, device: torch.device | None = None) -> torch.Tensor:
    """``V_ij = [j != i + offset]``: excludes each anchor's own column (anchor i is candidate i+offset)."""
    m = n if m is None else m
    rows = torch.arange(n, device=device)[:, None] + offset
    cols = torch.arange(m, device=device)[None, :]
    return rows != cols


def view_targets(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Instance pairing for ``z: [B, K, D]``: flat embeddings, P (other views of the same sample), V (not self)."""
    zf, ids = flatten_views(z)
    valid = not_self(zf.shape[0], device=z.device)
    return zf, same_id(ids, ids) & valid, valid


def label_targets(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Label pairing for ``z: [B, K, D]`` and ``labels: [B]``: P = same label (any view), V = not self."""
    zf, _ = flatten_views(z)
    labels = check_labels("labels", labels, z.shape[0])
    lab = labels.to(z.device).repeat_interleave(z.shape[1])
    valid = not_self(zf.shape[0], device=z.device)
    return zf, same_id(lab, lab) & valid, valid


def soft_targets(matrix: torch.Tensor, n: int, m: int, name: str = "targets") -> torch.Tensor:
    """Validate a soft target matrix ``[N, M]`` with entries >= 0 (graded positives, CWCL, SPACE-2)."""
    matrix = check_tensor(name, matrix)
    if matrix.shape != (n, m):
        raise ValueError(f"{name} must have shape [{n}, {m}], got {tuple(matrix.shape)}")
    if matrix.dtype != torch.bool:
        if not torch.isfinite(matrix).all():
            raise ValueError(f"{name} contains NaN or Inf")
        if (matrix < 0).any():
            raise ValueError(f"{name} must be >= 0, got min {float(matrix.min()):.4g}")
    return matrix


def targets_from_function(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    keys_a: torch.Tensor,
    keys_c: torch.Tensor,
) -> torch.Tensor:
    """Soft targets ``P_ij = fn(keys_a[i], keys_c[j])`` evaluated on broadcast ``[N, 1]`` x ``[1, M]`` keys."""
    out = fn(keys_a[:, None], keys_c[None, :])
    return soft_targets(out, keys_a.shape[0], keys_c.shape[0])
