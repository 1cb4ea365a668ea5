"""One logit-fusion rule for contrastive decoding: CAD, AdaCAD, VCD and RITUAL, with the adaptive plausibility mask.

Per decoding step, with ``z`` the logits of the main input and ``z'`` those of an auxiliary input (same generated
prefix)::

    contrast  (CAD / AdaCAD / VCD):  s = (1 + a) z - a z'
    add       (RITUAL):              s = z + a z'
    plausibility (optional, on the ORIGINAL main logits, before fusion):
                                     s[z < log(beta) + max z] = -inf

* **CAD** — context-aware decoding (Shi et al., 2023): ``z`` with the context, ``z'`` without; fixed ``a``
  (e.g. 0.5 or 1).
* **AdaCAD** (Wang, Prasad, Stengel-Eskin, Bansal, 2024; code ``HanNight/AdaCAD``,
  ``group_decode_fileio_adacad.py``): ``a = max(JSD(softmax z, softmax z'), floor)`` with the natural log, so
  ``a`` lies in ``[0, ln 2]``; ``floor=0`` for QA, 0.3 for summarisation. When the context agrees with the
  model (``z = z'``), ``a = 0`` and ``s = z`` exactly — no over-correction, the paper's point against static CAD.
* **VCD** (Leng et al., 2024): ``z'`` from a distorted (noised) image; ``a = 1``, ``beta = 0.1``.
* **RITUAL** (Woo et al., 2024; code ``sangminwoo/RITUAL``, ``ritual_utils/ritual_sample.py``): ``z'`` from a
  randomly transformed image, additive fusion with ``a = 3``, ``beta = 0.1``.

Fusion acts on raw logits: each branch's log-partition is a per-row constant that cancels in the softmax, so the
contrast rule is the product of experts ``p ∝ p^{1+a} / p'^{a}`` and the additive one ``p ∝ p · p'^{a}``.

Deviation from AdaCAD's official code, with a flag: the official ``get_jsd`` uses
``F.kl_div(..., reduction="batchmean")`` over the flattened batch, i.e. it would average ``a`` over the rows of
a batch (the code asserts batch size 1). Here ``a`` is computed **per row** (``[B]``); ``jsd_reduction="batch"``
reproduces the batch mean. The JSD is computed exactly in log-space (no clamping at 1e-9) on the full
distributions, before any top-k/top-p filtering.

Examples:
    >>> import torch
    >>> z = torch.tensor([[2.0, 1.9, -3.0, -5.0]]); z_aux = torch.tensor([[0.5, 2.5, -2.0, 4.0]])
    >>> LogitFusion(mode="add", alpha=1.0, beta=0.1)(z, z_aux).logits
    tensor([[2.5000, 4.4000,   -inf,   -inf]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pairlab._validate import check_choice, check_embeddings

MODES = ("contrast", "add")
JSD_REDUCTIONS = ("row", "batch")


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (natural log) between ``softmax(logits_p)`` and ``softmax(logits_q)`` per row.

    ``JSD = 0.5 KL(p || m) + 0.5 KL(q || m)``, ``m = (p + q) / 2``, computed from log-probabilities with a
    logsumexp for ``log m``; ``-inf`` logits (masked tokens) are handled exactly. Returns ``[...]`` in ``[0, ln 2]``.
    """
    lp = torch.log_softmax(logits_p.double(), dim=-1)
    lq = torch.log_softmax(logits_q.double(), dim=-1)
    lm = torch.logaddexp(lp, lq) - math.log(2.0)

    def kl(la: torch.Tensor) -> torch.Tensor:
        pa = la.exp()
        return torch.where(pa > 0, pa * (la - lm), torch.zeros_like(pa)).sum(-1)

    jsd = 0.5 * kl(lp) + 0.5 * kl(lq)
    return jsd.clamp(0.0, math.log(2.0)).to(torch.promote_types(logits_p.dtype, torch.float32))


def plausibility_mask(logits: torch.Tensor, beta: float) -> torch.Tensor:
    """Adaptive plausibility constraint: ``True`` where ``logits >= log(beta) + max(logits)`` (row-wise).

    Equivalent to ``p(token) >= beta * max p``; the arg-max token always survives.
    """
    if not 0.0 < float(beta) <= 1.0:
        raise ValueError(f"beta must lie in (0, 1], got {beta}")
    return logits >= logits.amax(dim=-1, keepdim=True) + math.log(float(beta))


@dataclass
class FusionResult:
    """Fused logits ``[B, V]`` and the weight ``alpha [B]`` used for each row."""

    logits: torch.Tensor
    alpha: torch.Tensor


def fuse_logits(
    z_main: torch.Tensor,
    z_aux: torch.Tensor,
    alpha: float | torch.Tensor | str = "jsd",
    mode: str = "contrast",
    floor: float = 0.0,
    beta: float | None = None,
    jsd_reduction: str = "row",
) -> FusionResult:
    """Fuse main and auxiliary logits ``[B, V]`` (see module docstring).

    Args:
        z_main: logits of the main input (with context / original image).
        z_aux: logits of the auxiliary input (no context / distorted or transformed image).
        alpha: fixed weight (float), per-row weights (``[B]`` tensor), or ``"jsd"`` (AdaCAD).
        mode: ``"contrast"`` (``(1+a) z - a z'``) or ``"add"`` (``z + a z'``).
        floor: lower bound of the JSD weight (AdaCAD's threshold; only with ``alpha="jsd"``).
        beta: adaptive plausibility threshold on ``z_main`` (``None``: no mask).
        jsd_reduction: ``"row"`` (default) or ``"batch"`` (official AdaCAD: one mean weight for the batch).

    Returns:
        :class:`FusionResult` (fused logits in the dtype of ``z_main`` promoted to float32; ``-inf`` where masked).
    """
    check_choice("mode", mode, MODES)
    check_choice("jsd_reduction", jsd_reduction, JSD_REDUCTIONS)
    z = check_embeddings("z_main", z_main, 2, "[B, V]", check_finite=False)
    za = check_embeddings("z_aux", z_aux, 2, "[B, V]", check_finite=False)
    if z.shape != za.shape:
        raise ValueError(f"z_main and z_aux must have one shape [B, V], got {tuple(z.shape)} and {tuple(za.shape)}")
    if bool(torch.isnan(z).any()) or bool(torch.isnan(za).any()):
        raise ValueError("z_main / z_aux contain NaN")
    dtype = torch.promote_types(z.dtype, torch.float32)
    z, za = z.to(dtype), za.to(dtype)
    if isinstance(alpha, str):
        check_choice("alpha", alpha, ("jsd",))
        a = js_divergence(z, za)
        if jsd_reduction == "batch":
            a = a.mean().expand_as(a)
        a = a.clamp_min(float(floor))
    elif isinstance(alpha, torch.Tensor):
        if alpha.ndim > 1 or (alpha.ndim == 1 and alpha.shape[0] != z.shape[0]):
            raise ValueError(f"alpha tensor must be a scalar or have shape [{z.shape[0]}], got {tuple(alpha.shape)}")
        a = alpha.to(device=z.device, dtype=dtype).expand(z.shape[0])
    else:
        a = torch.full((z.shape[0],), float(alpha), dtype=dtype, device=z.device)
    if not bool(torch.isfinite(a).all()) or bool((a < 0).any()):
        raise ValueError(f"alpha must be finite and >= 0, got {a.tolist()}")
    ac = a[:, None]
    if mode == "contrast":
        # rows with a == 0 return z exactly (also where z' has -inf entries)
        fused = torch.where(ac > 0, (1.0 + ac) * z - ac * za, z)
    else:
        fused = torch.where(ac > 0, z + ac * za, z)
    if beta is not None:
        fused = fused.masked_fill(~plausibility_mask(z, beta), float("-inf"))
    return FusionResult(fused, a)


@dataclass
class LogitFusion:
    """A configured fusion rule; call it on ``(z_main, z_aux)``. Presets: :meth:`cad`, :meth:`adacad`,
    :meth:`vcd`, :meth:`ritual`. Fields are :func:`fuse_logits`' arguments."""

    alpha: float | torch.Tensor | str = "jsd"
    mode: str = "contrast"
    floor: float = 0.0
    beta: float | None = None
    jsd_reduction: str = "row"

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("jsd_reduction", self.jsd_reduction, JSD_REDUCTIONS)
        if isinstance(self.alpha, str):
            check_choice("alpha", self.alpha, ("jsd",))
        if self.beta is not None and not 0.0 < float(self.beta) <= 1.0:
            raise ValueError(f"beta must lie in (0, 1], got {self.beta}")

    def __call__(self, z_main: torch.Tensor, z_aux: torch.Tensor) -> FusionResult:
        return fuse_logits(z_main, z_aux, self.alpha, self.mode, self.floor, self.beta, self.jsd_reduction)

    @classmethod
    def cad(cls, alpha: float = 0.5, beta: float | None = None) -> LogitFusion:
        """Context-aware decoding with a fixed weight."""
        return cls(alpha=float(alpha), mode="contrast", beta=beta)

    @classmethod
    def adacad(cls, floor: float = 0.0, beta: float | None = None, jsd_reduction: str = "row") -> LogitFusion:
        """AdaCAD: JSD weight per row, lower-bounded by ``floor`` (0 for QA, 0.3 for summarisation)."""
        return cls(alpha="jsd", mode="contrast", floor=floor, beta=beta, jsd_reduction=jsd_reduction)

    @classmethod
    def vcd(cls, alpha: float = 1.0, beta: float | None = 0.1) -> LogitFusion:
        """Visual contrastive decoding: ``(1+a) z - a z_noise`` with the plausibility mask."""
        return cls(alpha=float(alpha), mode="contrast", beta=beta)

    @classmethod
    def ritual(cls, alpha: float = 3.0, beta: float | None = 0.1) -> LogitFusion:
        """RITUAL: additive fusion with a randomly transformed input, ``a = 3``, ``beta = 0.1``."""
        return cls(alpha=float(alpha), mode="add", beta=beta)
