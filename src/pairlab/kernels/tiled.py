"""Tiled path of the one equation for the structured cases (DESIGN §1): key pairing, CLIP.

Same numbers as :func:`pairlab.nce.nce` on the dense matrices the objectives build, without the
``n x m`` matrix (see :mod:`pairlab.kernels.lse` for the tile schedules).

Views (NT-Xent, SupCon, DCL), anchors ``x [n, D]``, candidates ``y [m, D]``, keys ``kx``, ``ky``::

    valid  V_ij = j != self_offset + i
    P_ij = V_ij and kx_i == ky_j,        psum_i = sum_j P_ij
    loss_i = log sum_{j in K_i} exp(s_ij) - pos_i,     K_i = V_i (minus P_i if decoupled)
    pos_i  = (1/psum_i) sum_{j in P_i} s_ij             (mean_log, SupCon L_out)
           = logsumexp_{j in P_i} s_ij - log psum_i      (log_mean, SupCon L_in)

- The partition term is a tiled masked logsumexp (symmetric schedule when ``candidates is anchors``).
- The ``mean_log`` positive term needs no tiles: ``sum_{j in P_i} x_i.y_j = x_i . (Y_{key(i)} - [self] y_i)``
  with per-key sums ``Y_k`` (``index_add``), differentiable by ordinary autograd. ``log_mean`` runs a
  second tiled logsumexp over the positives only (tiles with no shared key are skipped).
- Counts are exact: ``psum`` from per-key counts, so anchors without positive (or without candidate) are
  excluded and counted before any tile runs; a batch with none raises (or returns a connected zero).
- Stats are exact up to rounding, from sums instead of masks: ``pos_score_mean`` from the per-key sums,
  ``neg_score_mean`` from ``(sum_i x_i) . (sum_j y_j)`` minus the self and positive pairs.

CLIP, ``a``, ``b`` local, ``a_all``, ``b_all`` gathered, positive column ``offset + i``: the mean of the two
directions. On one process ``S = a b^T`` serves both (row and column logsumexp of the same tiles);
``per_anchor[i]`` is the mean of pair ``i``'s two directions (so ``loss == per_anchor.mean()``), and the
stats are those of the ``a -> b`` direction, as on the dense path.
"""

from __future__ import annotations

import torch

from pairlab._validate import check_choice
from pairlab.kernels.lse import Spec, tiled_lse
from pairlab.nce import AGGREGATIONS, ON_NO_POSITIVE, NCEResult

DEFAULT_BLOCK = 512


def _dtype(*xs: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def _scale(scale: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(scale, torch.Tensor):
        scale = torch.tensor(float(scale), dtype=like.dtype, device=like.device)
    if scale.numel() != 1:
        raise ValueError(f"scale must be a scalar tensor, got shape {tuple(scale.shape)}")
    if not float(scale.detach()) > 0:
        raise ValueError(f"scale (1/tau) must be > 0, got {float(scale.detach())}")
    return scale.reshape(())


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[n]`` row-wise dot products without an ``[n, D]`` temporary (a batched matrix product)."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).reshape(-1)


def _no_positive(on_no_positive: str, n: int, stats: dict, *tensors: torch.Tensor) -> NCEResult:
    if on_no_positive == "raise":
        raise ValueError(
            "no anchor in the batch has a positive (and a candidate): the loss is undefined. "
            "Check labels/ids, or pass on_no_positive='zero' to get an explicit zero loss."
        )
    loss = sum(t.sum() * 0.0 for t in tensors)
    zeros = torch.zeros(n, dtype=tensors[0].dtype, device=tensors[0].device)
    return NCEResult(loss, zeros, torch.zeros(n, dtype=torch.bool, device=zeros.device), stats)


def views_nce(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    anchor_keys: torch.Tensor,
    cand_keys: torch.Tensor,
    self_offset: int,
    scale: torch.Tensor,
    *,
    aggregation: str = "mean_log",
    decoupled: bool = False,
    on_no_positive: str = "raise",
    block: int | None = None,
) -> NCEResult:
    """Key-paired InfoNCE (NT-Xent with instance keys, SupCon with labels, DCL with ``decoupled``).

    Args:
        anchors: ``[n, D]`` normalised (cosine) or raw (dot) embeddings; half precision is upcast.
        candidates: ``[m, D]``; ``candidates is anchors`` selects the symmetric schedule.
        anchor_keys, cand_keys: ``[n]``, ``[m]`` int64; positives share a key.
        self_offset: anchor ``i`` is candidate ``self_offset + i`` (excluded).
        scale: ``1/tau`` (0-dim tensor, may require grad).
        aggregation: ``"mean_log"`` (L_out) or ``"log_mean"`` (L_in).
        decoupled: remove positives from the partition (DCL).
        on_no_positive: ``"raise"`` or ``"zero"``.
        block: tile size (default :data:`DEFAULT_BLOCK`).

    Returns:
        :class:`~pairlab.nce.NCEResult` with the mean over used anchors, as :func:`pairlab.nce.nce`.
    """
    check_choice("aggregation", aggregation, AGGREGATIONS)
    check_choice("on_no_positive", on_no_positive, ON_NO_POSITIVE)
    block = int(block or DEFAULT_BLOCK)
    same = candidates is anchors
    dt = _dtype(anchors, candidates)
    x = anchors.to(dt)
    y = x if same else candidates.to(dt)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if y.shape[1] != d:
        raise ValueError(f"anchors and candidates must have the same dim, got {tuple(x.shape)} and {tuple(y.shape)}")
    kx, ky = anchor_keys.long().to(x.device), cand_keys.long().to(x.device)
    if kx.shape != (n,) or ky.shape != (m,):
        raise ValueError(f"keys must have shapes [{n}] and [{m}], got {tuple(kx.shape)} and {tuple(ky.shape)}")
    t = _scale(scale, x)
    tv = float(t.detach())

    # exact counts from per-key groups
    _, inv = torch.unique(torch.cat([kx, ky]), return_inverse=True)
    inv_x, inv_y = inv[:n], inv[n:]
    groups = int(inv.max()) + 1
    count_y = torch.bincount(inv_y, minlength=groups)
    idx = torch.arange(n, device=x.device) + self_offset
    in_range = (idx >= 0) & (idx < m)
    idx_c = idx.clamp(0, max(m - 1, 0))
    self_match = in_range & (ky[idx_c] == kx)
    psum = count_y[inv_x] - self_match.long()
    n_valid = m - in_range.long()
    n_cand = n_valid - psum if decoupled else n_valid
    has_pos, has_cand = psum > 0, n_cand > 0
    used = has_pos & has_cand
    n_used = int(used.sum())

    # positive sums (per-key sums; exact, O((n + m) D)); the self row is a view when all anchors are in range
    all_in = bool(in_range.all())
    y_self = y[self_offset : self_offset + n] if all_in else y[idx_c]
    ysum = torch.zeros(groups, d, dtype=dt, device=x.device).index_add(0, inv_y, y)
    pos_vec = torch.addcmul(ysum[inv_x], y_self, self_match[:, None].to(dt), value=-1.0)
    pos_dot = _rowdot(x, pos_vec)

    with torch.no_grad():
        n_pos = int(psum.sum())
        valid_total = float(x.detach().sum(0, dtype=torch.float64) @ y.detach().sum(0, dtype=torch.float64))
        valid_total -= float((_rowdot(x.detach(), y_self.detach()).double() * in_range).sum())
        pos_total = float(pos_dot.detach().double().sum())
        n_neg = int(n_valid.sum()) - n_pos
        stats: dict[str, float] = {
            "anchors": float(n),
            "anchors_used": float(n_used),
            "anchors_without_positive": float(int((~has_pos).sum())),
            "anchors_without_candidate": float(int((has_pos & ~has_cand).sum())),
            "positives_per_anchor": n_pos / max(n, 1),
        }
        if n_pos > 0:
            stats["pos_score_mean"] = tv * pos_total / n_pos
        if n_neg > 0:
            stats["neg_score_mean"] = tv * (valid_total - pos_total) / n_neg
    if n_used == 0:
        return _no_positive(on_no_positive, n, stats, x, y, t)

    sym = same and self_offset == 0 and (ky is kx or torch.equal(kx, ky))
    kind = "sym" if sym else "rows"
    spec = Spec(kind, "neq" if decoupled else "all", self_offset, block)
    lse = tiled_lse(x, y if not sym else x, t, kx, ky, spec, has_cand)
    if aggregation == "mean_log":
        pos = pos_dot * t / psum.clamp_min(1).to(dt)
    else:
        lsep = tiled_lse(x, y if not sym else x, t, kx, ky, spec._replace(mode="eq"), has_pos)
        pos = lsep - psum.clamp_min(1).to(dt).log()
    per_anchor = torch.where(used, lse - pos, torch.zeros((), dtype=dt, device=x.device))
    return NCEResult(per_anchor.sum() / n_used, per_anchor, used, stats)


def clip_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    a_all: torch.Tensor,
    b_all: torch.Tensor,
    offset: int,
    scale: torch.Tensor,
    *,
    on_no_positive: str = "raise",
    block: int | None = None,
) -> NCEResult:
    """Symmetric two-tower InfoNCE: mean of ``a -> b_all`` and ``b -> a_all``, positive column ``offset + i``.

    ``a_all is a`` and ``b_all is b`` (one process) uses one score product for both directions.
    ``on_no_positive`` is accepted for a uniform interface: every pair has its positive.
    """
    check_choice("on_no_positive", on_no_positive, ON_NO_POSITIVE)
    block = int(block or DEFAULT_BLOCK)
    dt = _dtype(a, b, a_all, b_all)
    single = a_all is a and b_all is b and offset == 0
    x, y = a.to(dt), b.to(dt)
    xa, yb = (x, y) if single else (a_all.to(dt), b_all.to(dt))
    n, m = x.shape[0], yb.shape[0]
    if y.shape[0] != n or xa.shape[0] != m or not 0 <= offset <= m - n:
        raise ValueError(
            f"clip_nce needs a, b [n, D] and a_all, b_all [m, D] with 0 <= offset <= m - n, got "
            f"a {tuple(a.shape)}, b {tuple(b.shape)}, a_all {tuple(a_all.shape)}, b_all {tuple(b_all.shape)}, "
            f"offset {offset}"
        )
    t = _scale(scale, x)
    tv = float(t.detach())
    ones_n = torch.ones(n, dtype=torch.bool, device=x.device)
    k_n = torch.zeros(n, dtype=torch.long, device=x.device)
    pos_r = _rowdot(x, yb[offset : offset + n]) * t
    if single:
        out = tiled_lse(x, y, t, k_n, k_n, Spec("bi", "all", None, block), ones_n, ones_n)
        lse_r, lse_c = out[:n], out[n:]
        pos_c = pos_r
    else:
        k_m = torch.zeros(m, dtype=torch.long, device=x.device)
        spec = Spec("rows", "all", None, block)
        lse_r = tiled_lse(x, yb, t, k_n, k_m, spec, ones_n)
        lse_c = tiled_lse(y, xa, t, k_n, k_m, spec, ones_n)
        pos_c = _rowdot(y, xa[offset : offset + n]) * t
    per_anchor = ((lse_r - pos_r) + (lse_c - pos_c)) / 2
    with torch.no_grad():
        pos_sum = float(pos_r.detach().double().sum())
        total = tv * float(x.detach().sum(0, dtype=torch.float64) @ yb.detach().sum(0, dtype=torch.float64))
        stats = {
            "anchors": float(n),
            "anchors_used": float(n),
            "anchors_without_positive": 0.0,
            "anchors_without_candidate": 0.0,
            "positives_per_anchor": 1.0,
            "pos_score_mean": pos_sum / n,
        }
        if m > 1:
            stats["neg_score_mean"] = (total - pos_sum) / (n * (m - 1))
    return NCEResult(per_anchor.mean(), per_anchor, ones_n, stats)
