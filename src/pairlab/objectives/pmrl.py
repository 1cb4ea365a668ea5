"""PMRL: principled multimodal representation learning (softmax over singular values).

Paper: Liu, Xia, Ng, Chua, "Principled Multimodal Representation Learning", arXiv 2507.17343
(TPAMI 2026). Official code: ``Xiaohao-Liu/PMRL`` (``utils/eigen.py::eigenvalue_computation_pmcl``,
``model/pmrl.py::forward_ret``).

For instance ``i`` with ``K`` L2-normalised modality embeddings stacked as ``A_i = [z_i^1..z_i^K]``
(``d x K``), singular values ``sigma_i`` (descending) and leading left singular vector ``u_i``::

    L_intra = mean_i [ -sigma_i1 / tau1 + logsumexp_k sigma_ik / tau1 ]    # CE(sigma_i / tau1, 0)
    L_inter = CE(u u^T / tau2, arange(B))                                   # instance discrimination
    L       = L_intra + inter_weight * L_inter

Both terms are the one equation (:func:`pairlab.nce.nce`): ``L_intra`` with the ``K`` singular values
as candidates and the first as target, ``L_inter`` with one-hot targets on the ``u`` similarities.
Full alignment of the ``K`` modalities means rank 1: ``sigma_1 = sqrt(K)``, the others 0
(``sum_k sigma_k^2 = K`` always).

Computation (pairlab): through the ``K x K`` Gram matrix ``G_i = A_i^T A_i`` (``eigh``,
``sigma^2 = lambda``, ``u_i = A_i v_1 / sigma_1``), O(K^3) per instance instead of the official
``d x d`` SVD; identical values, ``u`` up to sign.

Deviations from the official code (flags):
    - ``canonical_sign=True`` (default) fixes the SVD sign ambiguity: ``u_i`` is flipped so that
      ``u_i . sum_k z_i^k >= 0``. The official code does not, so the sign of every negative
      similarity ``u_i . u_j`` is arbitrary from step to step. ``False`` keeps the solver's sign.
    - ``eig_gap_eps``: the eigenvector backward divides by eigengaps ``lambda_j - lambda_i``; those
      are clamped to ``+-eig_gap_eps`` so near-degenerate spectra (e.g. ``K`` orthogonal modalities
      at init) give large but finite gradients. ``eig_jitter`` adds ``jitter * I`` to ``G``
      (default 0; the singular values then satisfy ``sum sigma^2 = K (1 + jitter)``).

Defaults: ``tau1 = intra_temperature = 0.05``, ``tau2 = temperature = 0.1`` (``utils/args.py``);
``L_inter`` on the local batch only (as the official code). The VAST-specific ITM term is out of
scope.
"""

from __future__ import annotations

import torch

from pairlab._validate import check_embeddings, check_positive
from pairlab.nce import nce
from pairlab.objectives.base import ContrastiveObjective
from pairlab.registry import register
from pairlab.scores import prepare


class _StableEigh(torch.autograd.Function):
    """``torch.linalg.eigh`` whose eigenvector backward clamps the eigengaps to ``+-eps``."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, eps: float):
        lam, v = torch.linalg.eigh(g)
        ctx.save_for_backward(lam, v)
        ctx.eps = eps
        return lam, v

    @staticmethod
    def backward(ctx, glam, gv):
        lam, v = ctx.saved_tensors
        inner = torch.zeros_like(v)
        if gv is not None:
            gap = lam[..., None, :] - lam[..., :, None]  # [.., i, j] = lambda_j - lambda_i
            gap = torch.where(gap >= 0, gap.clamp_min(ctx.eps), gap.clamp_max(-ctx.eps))
            k = lam.shape[-1]
            off = ~torch.eye(k, dtype=torch.bool, device=lam.device)
            vtg = v.mT @ gv
            vtg = 0.5 * (vtg - vtg.mT)  # only the skew part moves an orthonormal basis (as torch does)
            inner = torch.where(off, vtg / gap, torch.zeros_like(inner))
        if glam is not None:
            inner = inner + torch.diag_embed(glam)
        return v @ inner @ v.mT, None


def singular_decomposition(
    z: torch.Tensor, canonical_sign: bool = True, eig_gap_eps: float = 1e-6, eig_jitter: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values ``[B, K]`` (descending) and leading left singular vectors ``[B, D]`` of the
    per-instance stacks ``A_i = z_i^T`` for ``z: [B, K, D]`` (rows already normalised)."""
    g = z @ z.mT  # [B, K, K]
    if eig_jitter > 0:
        g = g + eig_jitter * torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    lam, v = _StableEigh.apply(g, eig_gap_eps)
    lam, v = lam.flip(-1), v.flip(-1)  # descending
    tiny = torch.finfo(lam.dtype).tiny
    # sqrt has an infinite slope at 0 (a zero view gives a zero eigenvalue): zero gradient there instead of NaN
    sigma = torch.where(lam > tiny, lam.clamp_min(tiny).sqrt(), torch.zeros_like(lam))
    v1 = v[..., 0]  # [B, K]
    if canonical_sign:
        # u . sum_k z^k = sigma_1 * sum(v1): make sum(v1) >= 0
        sign = torch.where(v1.sum(-1, keepdim=True) >= 0, 1.0, -1.0).to(v1.dtype)
        v1 = v1 * sign.detach()
    u = torch.einsum("bk,bkd->bd", v1, z) / sigma[..., :1].clamp_min(torch.finfo(sigma.dtype).tiny)
    return sigma, u


@register("objectives", "pmrl", input="views", paper="Liu et al. 2025 (arXiv 2507.17343)")
class PMRL(ContrastiveObjective):
    """Softmax over the singular values of the ``K`` modality embeddings + instance regulariser.

    Args:
        temperature: ``tau2`` of the instance-wise term ``L_inter`` (0.1).
        intra_temperature: ``tau1`` of the singular-value softmax ``L_intra`` (0.05).
        inter_weight: weight of ``L_inter`` (1; 0 disables it).
        canonical_sign: fix the sign of ``u`` (pairlab default; ``False`` = official).
        eig_gap_eps, eig_jitter: numerics of the eigen-decomposition (see module docstring).

    ``forward(z)``: ``z: [B, K, D]``, modality ``k`` of instance ``b`` at ``z[b, k]`` (``K >= 2``).
    ``last_stats`` has ``sigma1_sq_over_k`` (1 = fully aligned) and the two terms.

    Examples:
        >>> text, video, audio = (torch.randn(32, 16) for _ in range(3))
        >>> loss = PMRL()(torch.stack([text, video, audio], dim=1))
    """

    def __init__(
        self,
        temperature: float = 0.1,
        intra_temperature: float = 0.05,
        inter_weight: float = 1.0,
        canonical_sign: bool = True,
        eig_gap_eps: float = 1e-6,
        eig_jitter: float = 0.0,
        similarity: str = "cosine",
        **kw,
    ):
        super().__init__(temperature, similarity, **kw)
        self.intra_temperature = check_positive("intra_temperature", intra_temperature)
        self.inter_weight = float(inter_weight)
        if not self.inter_weight >= 0:
            raise ValueError(f"inter_weight must be >= 0, got {inter_weight}")
        self.canonical_sign = bool(canonical_sign)
        self.eig_gap_eps = check_positive("eig_gap_eps", eig_gap_eps)
        self.eig_jitter = float(eig_jitter)
        if not self.eig_jitter >= 0:
            raise ValueError(f"eig_jitter must be >= 0, got {eig_jitter}")

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z: [B, K, D]`` modality embeddings; ``labels`` is accepted and ignored."""
        check_embeddings("z", z, 3, "[B, K, D]")
        b, k, _ = z.shape
        if k < 2:
            raise ValueError(f"z needs K >= 2 modalities per instance, got shape {tuple(z.shape)}")
        zn = prepare(z, self.similarity)
        sigma, u = singular_decomposition(zn, self.canonical_sign, self.eig_gap_eps, self.eig_jitter)
        first = torch.zeros(b, k, dtype=torch.bool, device=z.device)
        first[:, 0] = True
        intra = nce(sigma / self.intra_temperature, first)
        loss = intra.loss
        stats = {"anchors": float(b), "loss_intra": float(intra.loss.detach()),
                 "sigma1_sq_over_k": float((sigma[:, 0].detach() ** 2 / k).mean())}
        if self.inter_weight > 0:
            if b < 2:
                raise ValueError(f"L_inter needs at least 2 instances, got shape {tuple(z.shape)}")
            eye = torch.eye(b, dtype=torch.bool, device=z.device)
            inter = nce((u @ u.T) * self.temperature.scale(), eye, on_no_positive=self.on_no_positive)
            loss = loss + self.inter_weight * inter.loss
            stats.update({k2: v for k2, v in inter.stats.items() if k2.endswith("score_mean")})
            stats["loss_inter"] = float(inter.loss.detach())
        self.last_stats = stats
        return loss

    def extra_repr(self) -> str:
        return (f"tau1={self.intra_temperature}, tau2={self.temperature.value:.4g}, "
                f"inter_weight={self.inter_weight}, canonical_sign={self.canonical_sign}")
