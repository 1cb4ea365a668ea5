"""Tiled masked logsumexp over ``t * x @ y^T`` without materialising the score matrix.

For rows ``x [n, D]``, columns ``y [m, D]`` and a scale ``t`` (``1/tau``)::

    lse_i = log sum_j M_ij exp(t * x_i . y_j)

where the mask ``M`` keeps every column except the self pair ``j == self_offset + i`` and, by key, keeps
``"all"`` columns, only ``"eq"`` (key equal: the positives of SupCon L_in) or only ``"neq"`` (key differs:
the decoupled partition of DCL). A row whose mask is empty gets ``-inf``.

Three tile schedules, all custom :class:`torch.autograd.Function`s that keep only ``x``, ``y`` and the
``lse`` vectors and recompute each tile in backward (memory ``O(block^2 + (n + m) D)``, never ``O(n m)``):

- ``"sym"`` (``y is x``, SimCLR/SupCon on one process): the score matrix is symmetric, so only blocks
  ``I <= J`` are visited. A block's row sums go to rows ``I`` and its column sums to rows ``J``. Backward
  uses ``H = E * (w_I + w_J^T)`` with ``E = exp(S - c)`` and ``w = g exp(c - lse)``, then
  ``dz_I += H (t z_J)``, ``dz_J += H^T (t z_I)``. Work: 2 GEMM units of ``n x n x D`` for forward +
  backward (the dense loss needs 3).
- ``"bi"`` (CLIP on one process): every block once; row sums give the ``x -> y`` direction, column sums
  the ``y -> x`` direction, so one product ``S = x y^T`` serves both. Work: 4 GEMM units of ``n x m x D``
  (1 forward, 1 recompute, 2 gradient products).
- ``"rows"`` (everything else: extra columns, gathered candidates): row-chunk with an online row maximum.

``sym`` and ``bi`` use a constant shift ``c = bound - margin`` (``bound = t max|x| max|y| >= |s_ij|``,
margin 40 in float32, 320 in float64), so one ``exp`` of a tile serves rows and columns. If any non-empty
row (or column) sum falls below ``tiny ** 0.75`` (a row far below the bound, e.g. tiny tau with
dissimilar rows), the forward is redone with the ``rows`` schedule, whose online maximum cannot underflow.

The scale's gradient is free: the loss depends on ``t`` only through ``s = t x.y``, so
``t dL/dt = sum_ij G_ij s_ij = <x, dL/dx>`` (Euler's identity for the bilinear form).

Tile buffers are allocated once per call and reused (``out=`` / in-place ops): fresh ``block^2``
temporaries per tile cost more in page faults than the arithmetic on a CPU VM.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

MODES = ("all", "eq", "neq")
KINDS = ("rows", "sym", "bi")


class Spec(NamedTuple):
    """Which mask and which tile schedule (see the module docstring)."""

    kind: str
    mode: str
    self_offset: int | None
    block: int


def _margin(dtype: torch.dtype) -> float:
    return 0.45 * math.log(torch.finfo(dtype).max)


def _threshold(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).tiny ** 0.75


class _Work:
    """Reusable tile buffers: scores/probabilities, the weight outer sum, the key mask, row/column sums."""

    def __init__(self, block: int, dtype: torch.dtype, device: torch.device, weights: bool, keys: bool):
        self.s = torch.empty(block * block, dtype=dtype, device=device)
        self.w = torch.empty(block * block, dtype=dtype, device=device) if weights else None
        self.eq = torch.empty(block * block, dtype=torch.bool, device=device) if keys else None
        self.r = torch.empty(block, dtype=dtype, device=device)
        self.c = torch.empty(block, dtype=dtype, device=device)

    @staticmethod
    def view(buf: torch.Tensor, bi: int, bj: int) -> torch.Tensor:
        return buf[: bi * bj].view(bi, bj)


class _Keys:
    """Per-block key ranges, to skip tiles with no equal keys (instance keys are sorted per rank)."""

    def __init__(self, kx: torch.Tensor, ky: torch.Tensor, block: int, mode: str):
        self.kx, self.ky, self.mode, self.block = kx, ky, mode, block
        if mode == "all":
            return
        self.x = [(int(kx[s : s + block].min()), int(kx[s : s + block].max())) for s in range(0, kx.numel(), block)]
        self.y = [(int(ky[s : s + block].min()), int(ky[s : s + block].max())) for s in range(0, ky.numel(), block)]

    def overlap(self, r0: int, c0: int) -> bool:
        (xl, xh), (yl, yh) = self.x[r0 // self.block], self.y[c0 // self.block]
        return not (xh < yl or yh < xl)

    def skip(self, r0: int, c0: int) -> bool:
        """The tile contributes nothing (``eq`` mode and no shared key)."""
        return self.mode == "eq" and not self.overlap(r0, c0)


def _mask(e: torch.Tensor, r0: int, c0: int, spec: Spec, keys: _Keys, work: _Work, fill: float) -> None:
    """Set the excluded entries of tile ``e`` (rows ``r0..``, columns ``c0..``) to ``fill``, in place."""
    bi, bj = e.shape
    if spec.self_offset is not None:
        k = spec.self_offset + r0 - c0
        if -bi < k < bj:
            e.diagonal(k).fill_(fill)
    if spec.mode == "all" or not keys.overlap(r0, c0):
        return  # "neq": nothing equal to remove; "eq" tiles without overlap are skipped by the caller
    eq = work.view(work.eq, bi, bj)
    torch.eq(keys.kx[r0 : r0 + bi, None], keys.ky[None, c0 : c0 + bj], out=eq)
    if spec.mode == "eq":
        torch.logical_not(eq, out=eq)
    e.masked_fill_(eq, fill)


def _col_starts(kind: str, r0: int, m: int, block: int) -> range:
    return range(r0, m, block) if kind == "sym" else range(0, m, block)


def _fwd_const(xs, y, keys: _Keys, spec: Spec, c: float):
    """Row (and column) sums of ``exp(S - c)`` in float64; ``sym`` folds column sums into the rows."""
    n, m, block = xs.shape[0], y.shape[0], spec.block
    work = _Work(block, xs.dtype, xs.device, weights=False, keys=spec.mode != "all")
    racc = torch.zeros(n, dtype=torch.float64, device=xs.device)
    cacc = torch.zeros(m, dtype=torch.float64, device=xs.device) if spec.kind == "bi" else racc
    for r0 in range(0, n, block):
        bi = min(block, n - r0)
        for c0 in _col_starts(spec.kind, r0, m, block):
            if keys.skip(r0, c0):
                continue
            bj = min(block, m - c0)
            e = work.view(work.s, bi, bj)
            torch.mm(xs[r0 : r0 + bi], y[c0 : c0 + bj].T, out=e)
            e.sub_(c).exp_()
            _mask(e, r0, c0, spec, keys, work, 0.0)
            racc[r0 : r0 + bi] += torch.sum(e, dim=1, out=work.r[:bi])
            if spec.kind == "bi" or c0 != r0:
                cacc[c0 : c0 + bj] += torch.sum(e, dim=0, out=work.c[:bj])
    return racc, (cacc if spec.kind == "bi" else None)


def _fwd_rows(xs, y, keys: _Keys, spec: Spec) -> torch.Tensor:
    """Row logsumexp with an online row maximum (cannot underflow); float64 result."""
    n, m, block = xs.shape[0], y.shape[0], spec.block
    work = _Work(block, xs.dtype, xs.device, weights=False, keys=spec.mode != "all")
    lowest = -torch.finfo(xs.dtype).max / 4
    out = torch.empty(n, dtype=torch.float64, device=xs.device)
    for r0 in range(0, n, block):
        bi = min(block, n - r0)
        run = torch.full((bi,), lowest, dtype=xs.dtype, device=xs.device)
        acc = torch.zeros(bi, dtype=torch.float64, device=xs.device)
        for c0 in range(0, m, block):
            if keys.skip(r0, c0):
                continue
            bj = min(block, m - c0)
            s = work.view(work.s, bi, bj)
            torch.mm(xs[r0 : r0 + bi], y[c0 : c0 + bj].T, out=s)
            _mask(s, r0, c0, spec, keys, work, float("-inf"))
            new = torch.maximum(run, torch.amax(s, dim=1, out=work.r[:bi]))
            acc.mul_(torch.exp(run - new))
            s.sub_(new[:, None]).exp_()
            acc += torch.sum(s, dim=1, out=work.c[:bi])
            run = new
        out[r0 : r0 + bi] = run.double() + acc.log()
    return out


def _bwd_const(xs, ys, y, keys: _Keys, spec: Spec, c: float, wr, wc):
    """Gradients ``(dx, dy)`` of the ``sym``/``bi`` schedules; ``wr = g_r exp(c - lse_r)`` (same for cols)."""
    n, m, block = xs.shape[0], y.shape[0], spec.block
    work = _Work(block, xs.dtype, xs.device, weights=True, keys=spec.mode != "all")
    dx = torch.zeros_like(xs)
    dy = dx if spec.kind == "sym" else torch.zeros_like(ys)
    for r0 in range(0, n, block):
        bi = min(block, n - r0)
        for c0 in _col_starts(spec.kind, r0, m, block):
            if keys.skip(r0, c0):
                continue
            bj = min(block, m - c0)
            h = work.view(work.s, bi, bj)
            torch.mm(xs[r0 : r0 + bi], y[c0 : c0 + bj].T, out=h)
            h.sub_(c).exp_()
            _mask(h, r0, c0, spec, keys, work, 0.0)
            w = work.view(work.w, bi, bj)
            torch.add(wr[r0 : r0 + bi, None], wc[None, c0 : c0 + bj], out=w)
            h.mul_(w)
            dx[r0 : r0 + bi].addmm_(h, ys[c0 : c0 + bj])
            if spec.kind == "bi" or c0 != r0:
                dy[c0 : c0 + bj].addmm_(h.T, xs[r0 : r0 + bi])
    return dx, (None if spec.kind == "sym" else dy)


def _bwd_rows(xs, ys, y, keys: _Keys, spec: Spec, lse, g):
    """Gradients ``(dx, dy)`` of the row schedule; ``lse`` is +inf on rows with an empty mask."""
    n, m, block = xs.shape[0], y.shape[0], spec.block
    work = _Work(block, xs.dtype, xs.device, weights=False, keys=spec.mode != "all")
    accx = torch.zeros_like(xs)
    dy = torch.zeros_like(ys)
    xg = xs * g[:, None]
    for r0 in range(0, n, block):
        bi = min(block, n - r0)
        if not bool(g[r0 : r0 + bi].any()):
            continue
        for c0 in range(0, m, block):
            if keys.skip(r0, c0):
                continue
            bj = min(block, m - c0)
            p = work.view(work.s, bi, bj)
            torch.mm(xs[r0 : r0 + bi], y[c0 : c0 + bj].T, out=p)
            p.sub_(lse[r0 : r0 + bi, None]).exp_()
            _mask(p, r0, c0, spec, keys, work, 0.0)
            accx[r0 : r0 + bi].addmm_(p, ys[c0 : c0 + bj])
            dy[c0 : c0 + bj].addmm_(p.T, xg[r0 : r0 + bi])
    return accx * g[:, None], dy


def _transposed(spec: Spec) -> Spec:
    off = None if spec.self_offset is None else -spec.self_offset
    return Spec("rows", spec.mode, off, spec.block)


def _max_norm(x: torch.Tensor) -> float:
    return float(x.norm(dim=1).max()) if x.numel() else 0.0


def _dot(a: torch.Tensor, b: torch.Tensor, chunk: int = 8192) -> float:
    """``<a, b>`` accumulated in float64 over row chunks (no full-size float64 copies)."""
    return float(sum(float(torch.linalg.vecdot(a[i : i + chunk].double(), b[i : i + chunk].double()).sum())
                     for i in range(0, a.shape[0], chunk)))


class _TiledLSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, t, kx, ky, spec: Spec, ne_r, ne_c):
        tv = float(t)
        xs = x * tv
        keys = _Keys(kx, ky, spec.block, spec.mode)
        method, c, lse_c = "rows", 0.0, None
        if spec.kind in ("sym", "bi"):
            c = tv * _max_norm(x) * _max_norm(y) - _margin(x.dtype)
            racc, cacc = _fwd_const(xs, y, keys, spec, c)
            thr = _threshold(x.dtype)
            ok = not bool((racc[ne_r] < thr).any())
            if cacc is not None:
                ok = ok and not bool((cacc[ne_c] < thr).any())
            if ok:
                method = "const"
                lse_r = c + racc.log()
                lse_c = None if cacc is None else c + cacc.log()
        if method == "rows":
            lse_r = _fwd_rows(xs, y, keys, spec)
            if spec.kind == "bi":
                lse_c = _fwd_rows(y * tv, x, _Keys(ky, kx, spec.block, spec.mode), _transposed(spec))
        ctx.method, ctx.spec, ctx.c, ctx.tv = method, spec, c, tv
        ctx.save_for_backward(x, y, t, kx, ky, lse_r, lse_c if lse_c is not None else lse_r)
        out = lse_r if lse_c is None else torch.cat([lse_r, lse_c])
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, y, t, kx, ky, lse_r, lse_c = ctx.saved_tensors
        spec, tv, c = ctx.spec, ctx.tv, ctx.c
        n = x.shape[0]
        g = grad.double()
        gr, gc = g[:n], g[n:]
        xs = x * tv
        ys = xs if y is x else y * tv
        keys = _Keys(kx, ky, spec.block, spec.mode)
        if ctx.method == "const":

            def weight(gv, lse):
                fin = torch.isfinite(lse)
                return torch.where(fin, gv * torch.exp(c - torch.where(fin, lse, 0.0)), 0.0).to(x.dtype)

            wr = weight(gr, lse_r)
            wc = wr if spec.kind == "sym" else weight(gc, lse_c)
            dx, dy = _bwd_const(xs, ys, y, keys, spec, c, wr, wc)
            # sym: dx holds both sides, and <z, dz> counts every score twice
            dt = _dot(x, dx) / (2 * tv if spec.kind == "sym" else tv)
        else:

            def safe(lse):
                return torch.where(torch.isfinite(lse), lse, float("inf")).to(x.dtype)

            dx, dy = _bwd_rows(xs, ys, y, keys, spec if spec.kind != "sym" else spec._replace(kind="rows"),
                               safe(lse_r), gr.to(x.dtype))
            dt = _dot(x, dx) / tv
            if spec.kind == "bi":
                dyc, dxc = _bwd_rows(ys, xs, x, _Keys(ky, kx, spec.block, spec.mode), _transposed(spec),
                                     safe(lse_c), gc.to(x.dtype))
                dt += _dot(y, dyc) / tv
                dx, dy = dx + dxc, dy + dyc
            if spec.kind == "sym":
                dx, dy = dx + dy, None
        dt_t = torch.tensor(dt, dtype=t.dtype, device=t.device).reshape(t.shape) if ctx.needs_input_grad[2] else None
        return dx, dy, dt_t, None, None, None, None, None


def tiled_lse(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    kx: torch.Tensor,
    ky: torch.Tensor,
    spec: Spec,
    nonempty_rows: torch.Tensor,
    nonempty_cols: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked ``logsumexp_j`` of ``scale * x @ y^T`` per row (``[n]``; ``bi``: ``[n + m]``, rows then columns).

    ``x``, ``y`` float32/float64 of the same dtype (``sym`` requires ``y is x``); ``scale`` a 0-dim
    tensor (may require grad); ``kx [n]``, ``ky [m]`` int64 keys; ``nonempty_*`` bool, rows (columns)
    whose mask is non-empty (used by the underflow check of the constant shift).
    """
    if spec.kind not in KINDS or spec.mode not in MODES:
        raise ValueError(f"bad tile spec {spec}")
    if spec.kind == "sym" and y is not x:
        raise ValueError("the symmetric schedule needs y is x")
    ne_c = nonempty_rows if nonempty_cols is None else nonempty_cols
    return _TiledLSE.apply(x, y, scale, kx, ky, spec, nonempty_rows, ne_c)
