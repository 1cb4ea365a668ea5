"""SigLIP: pairwise sigmoid loss for two towers (Zhai, Mustafa, Kolesnikov & Beyer, "Sigmoid Loss for
Language Image Pre-Training", ICCV 2023, Algorithm 1)::

    l_ij = t * <x_i, y_j> + b,        z_ij = +1 if j is i's partner else -1
    L    = -1/|B| sum_i sum_j log sigmoid(z_ij * l_ij)  =  1/|B| sum_ij softplus(-z_ij * l_ij)

Every pair is an independent binary problem; there is no softmax over the batch. Defaults follow the
paper: learnable ``t = exp(t')`` with ``t' = log 10`` (``temperature=0.1``) and learnable bias
``b = -10``; the paper does not clamp ``t`` (``max_scale=None``), open_clip clamps at 100
(``max_scale=100`` reproduces it). Cosine similarity (L2-normalised towers) by default.

Distributed: anchors (rows of ``a``) stay local, the other tower is gathered *with gradient*
(:func:`pairlab.distributed.gather_with_grad`, rank order) and every rank sums its local rows x all
columns and divides by its *local* batch size, as in the paper. With DDP's gradient averaging this is
exactly the single-process big-batch gradient (tested with 2 gloo processes); uneven rank batch sizes
are handled by :func:`pairlab.distributed.global_mean` (the value on each rank is its share; log the
mean over ranks). ``t`` and ``b`` live in the loss module: put it inside the DDP-wrapped module or
call :func:`pairlab.distributed.average_gradients` on its parameters before the optimiser step. The paper's chunked
ring exchange (open_clip ``dist_impl="bidir"``) sends the same numbers in a different order; here the
gather is one collective.

Backends: ``"dense"`` builds the ``[B, N]`` logits; ``"tiled"`` is a custom autograd function that
walks ``chunk_size x chunk_size`` tiles and keeps nothing of size ``B x N`` for backward (it recomputes
each tile's logits), so memory is O((B + N) D + chunk^2). ``"auto"`` picks tiled once ``B * N`` reaches
``tile_threshold`` entries. Both agree to float tolerance in value and gradient.

``extra [M, D]`` appends negative-only columns (a queue or cross-batch memory of the other tower).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pairlab import distributed
from pairlab._validate import check_embeddings, check_positive, check_same_batch, check_same_dim
from pairlab.objectives.base import ContrastiveObjective
from pairlab.registry import register
from pairlab.scores import Temperature, prepare

_UNCLAMPED = 1e8  # max_scale=None: effectively no clamp (log = 18.4)


def sigmoid_pair_loss_dense(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, pos_offset: int = 0
) -> torch.Tensor:
    """``sum_ij softplus(-z_ij (scale a_i.b_j + bias))``; row ``i``'s positive is column ``i + pos_offset``."""
    logits = scale * (a @ b.T) + bias
    n, m = logits.shape
    rows = torch.arange(n, device=a.device)[:, None] + pos_offset
    z = torch.where(rows == torch.arange(m, device=a.device)[None, :], 1.0, -1.0).to(logits.dtype)
    return torch.nn.functional.softplus(-z * logits).sum()


class _SigmoidPairTiled(torch.autograd.Function):
    """Tiled sum of the pairwise sigmoid loss; backward recomputes each tile (no B x N tensor kept)."""

    @staticmethod
    def forward(ctx, a, b, scale, bias, pos_offset: int, chunk: int):  # type: ignore[override]
        ctx.save_for_backward(a, b, scale, bias)
        ctx.pos_offset, ctx.chunk = pos_offset, chunk
        total = a.new_zeros(())
        for *_, z, logits in _tiles(a, b, scale, bias, pos_offset, chunk):
            total = total + torch.nn.functional.softplus(-z * logits).sum()
        return total

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        a, b, scale, bias = ctx.saved_tensors
        need_a, need_b, need_s, need_bias = ctx.needs_input_grad[:4]
        da = torch.zeros_like(a) if need_a else None
        db = torch.zeros_like(b) if need_b else None
        ds = torch.zeros((), dtype=a.dtype, device=a.device)
        dbias = torch.zeros((), dtype=a.dtype, device=a.device)
        for i0, i1, j0, j1, z, logits in _tiles(a, b, scale, bias, ctx.pos_offset, ctx.chunk):
            g = grad_out * (-z) * torch.sigmoid(-z * logits)  # d softplus(-z l) / d l
            if need_a:
                da[i0:i1] += scale * (g @ b[j0:j1])
            if need_b:
                db[j0:j1] += scale * (g.T @ a[i0:i1])
            if need_s:
                ds += (g * (a[i0:i1] @ b[j0:j1].T)).sum()
            if need_bias:
                dbias += g.sum()
        return (
            da,
            db,
            ds.to(scale.dtype).reshape(scale.shape) if need_s else None,
            dbias.to(bias.dtype).reshape(bias.shape) if need_bias else None,
            None,
            None,
        )


def _tiles(a, b, scale, bias, pos_offset, chunk):
    n, m = a.shape[0], b.shape[0]
    s, bb = scale.to(a.dtype), bias.to(a.dtype)
    for i0 in range(0, n, chunk):
        i1 = min(i0 + chunk, n)
        rows = torch.arange(i0, i1, device=a.device)[:, None] + pos_offset
        for j0 in range(0, m, chunk):
            j1 = min(j0 + chunk, m)
            with torch.no_grad():
                logits = s * (a[i0:i1] @ b[j0:j1].T) + bb
                cols = torch.arange(j0, j1, device=a.device)[None, :]
                z = torch.where(rows == cols, 1.0, -1.0).to(logits.dtype)
            yield i0, i1, j0, j1, z, logits


def sigmoid_pair_loss_tiled(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, pos_offset: int = 0,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Same value and gradient as :func:`sigmoid_pair_loss_dense`, in ``chunk_size`` tiles."""
    scale = scale if isinstance(scale, torch.Tensor) else torch.tensor(float(scale), dtype=a.dtype)
    bias = bias if isinstance(bias, torch.Tensor) else torch.tensor(float(bias), dtype=a.dtype)
    return _SigmoidPairTiled.apply(a, b, scale, bias, int(pos_offset), int(chunk_size))


@register("objectives", "siglip", input="pair", paper="Zhai et al. 2023 (SigLIP)")
class SigLIPLoss(ContrastiveObjective):
    """Pairwise sigmoid loss with learnable temperature and bias.

    Args:
        temperature: initial ``1/t`` (paper: ``t = 10``, i.e. ``temperature=0.1``).
        bias: initial bias ``b`` (paper: -10).
        learnable_temperature / learnable_bias: learn ``log t`` / ``b`` (paper: both).
        max_scale: clamp of the learnable ``t``; ``None`` = no clamp (paper), 100 = open_clip.
        similarity: ``"cosine"`` (default) or ``"dot"``.
        backend: ``"auto"``, ``"dense"`` or ``"tiled"``; chunk_size: tile side of the tiled path.
        tile_threshold: ``"auto"`` uses the tiled path once ``B * N`` reaches this many entries.

    ``forward(a [B, D], b [B, D], extra=None [M, D])``: row ``i`` of ``a`` is paired with row ``i`` of ``b``;
    ``extra`` rows are negatives of every ``a_i``. Returns a scalar; ``last_stats`` holds the mean
    positive/negative logit, ``t`` and ``b``.

    Examples:
        >>> loss_fn = SigLIPLoss()                     # t = 10, b = -10, both learnable
        >>> loss = loss_fn(torch.randn(64, 512), torch.randn(64, 512))
    """

    def __init__(
        self,
        temperature: float = 0.1,
        bias: float = -10.0,
        learnable_temperature: bool = True,
        learnable_bias: bool = True,
        max_scale: float | None = None,
        similarity: str = "cosine",
        backend: str = "auto",
        chunk_size: int = 1024,
        tile_threshold: int = 2**22,
    ):
        super().__init__(temperature, similarity, learnable_temperature=learnable_temperature, backend=backend)
        ms = _UNCLAMPED if max_scale is None else check_positive("max_scale", max_scale)
        self.temperature = Temperature(temperature, learnable=learnable_temperature, max_scale=ms)
        if not math.isfinite(float(bias)):
            raise ValueError(f"bias must be a finite number, got {bias}")
        if learnable_bias:
            self.bias = nn.Parameter(torch.tensor(float(bias)))
        else:
            self.register_buffer("bias", torch.tensor(float(bias)), persistent=False)
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        self.tile_threshold = int(tile_threshold)

    def _use_tiled(self, n: int, m: int) -> bool:
        if self.backend == "tiled":
            return True
        return self.backend == "auto" and n * m >= self.tile_threshold

    def forward(self, a: torch.Tensor, b: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        check_embeddings("a", a, 2, "[B, D]")
        check_embeddings("b", b, 2, "[B, D]")
        check_same_batch(("a", "b"), (a, b))
        check_same_dim(("a", "b"), (a, b))
        xa, xb = prepare(a, self.similarity), prepare(b, self.similarity)
        all_sizes = distributed.sizes(b.shape[0], b.device)
        cols = distributed.gather_with_grad(xb, all_sizes)
        offset = distributed.offset(b.shape[0], all_sizes)
        if extra is not None:
            check_embeddings("extra", extra, 2, "[M, D]")
            check_same_dim(("b", "extra"), (b, extra))
            cols = torch.cat([cols, prepare(extra, self.similarity).to(cols.dtype)])
        dt = torch.promote_types(xa.dtype, cols.dtype)
        xa, cols = xa.to(dt), cols.to(dt)
        scale = self.temperature.scale().to(dt)
        bias = self.bias.to(dt)
        if self._use_tiled(xa.shape[0], cols.shape[0]):
            total = sigmoid_pair_loss_tiled(xa, cols, scale, bias, offset, self.chunk_size)
        else:
            total = sigmoid_pair_loss_dense(xa, cols, scale, bias, offset)
        with torch.no_grad():
            pos = scale * (xa * cols[offset : offset + xa.shape[0]]).sum(-1) + bias
            n_pairs = xa.shape[0] * cols.shape[0]
            sum_all = scale * (xa.sum(0) @ cols.sum(0)) + bias * n_pairs
            neg_mean = (sum_all - pos.sum()) / max(n_pairs - xa.shape[0], 1)
            self.last_stats = {"pos_logit_mean": float(pos.mean()), "neg_logit_mean": float(neg_mean),
                               "t": float(scale), "b": float(bias), "candidates": float(cols.shape[0])}
        # the paper's normalisation (sum / local batch), made the rank's share of the global mean so that
        # uneven rank batch sizes still give the big-batch loss and gradient (identity on one process)
        loss, _ = distributed.global_mean(total / a.shape[0], a.shape[0])
        return loss

    def extra_repr(self) -> str:
        t, b = float(self.temperature.scale().detach()), float(self.bias.detach())
        return f"{super().extra_repr()}, t={t:.4g}, b={b:.4g}"
