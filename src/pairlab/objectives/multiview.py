"""MV-InfoNCE and MV-DHEL: multi-view contrastive objectives for ``K >= 2`` views.

Paper: Koromilas, Georgiou, Bouritsas, Giannakopoulos, Nicolaou, Panagakis, "A Principled Framework
for Multi-View Contrastive Learning", arXiv 2507.06979. Official code: ``pakoromilas/Multi-View-CL``
(``models/losses.py``: ``MVINFONCE``, ``MVDHEL``).

With ``u_{i,l}`` the normalised view ``l`` of sample ``i`` and ``s(x, y) = x.y / tau``:

MV-InfoNCE (one term per *sample*, all its ``K`` views pooled in one partition)::

    num_i = sum_{l != m} exp s(u_il, u_im)                        # ordered view pairs of sample i
    den_i = sum_l sum_{(m, j) != (l, i)} exp s(u_il, u_jm)        # every other row of the K*B batch
    L     = -(1/B) sum_i log(num_i / den_i)

This is the one equation (:func:`pairlab.nce.nce`) with the *sample* as anchor: its score row is
the ``K`` view rows side by side (``K * B*K`` columns), the positives are the other views of the
sample, and ``aggregation="log_mean"`` pools them inside the log; ``nce`` normalises the positive
mass by its count, so the constant ``log(K(K-1))`` is added back to return the paper's value.

MV-DHEL (decoupled: one uniformity partition per view, alignment over all view pairs)::

    num_i = sum_{l < m} exp s(u_il, u_im)                         # unordered view pairs
    E_il  = sum_{j != i} exp s(u_il, u_jl)                        # within-view energy, self excluded
    L     = -(1/B) sum_i [ log num_i - sum_l log E_il ]

For ``K = 2`` MV-DHEL is DHEL (``NTXentHPS`` in the official code).

Numerics: the official code multiplies the raw exp-sums of the ``K`` views (``torch.prod``), which
overflows float32 around ``K = 9`` at ``tau = 0.2``; here every term is a ``logsumexp`` with ``-inf``
masks, so any ``K`` works.

Denominators (official code vs README formula); the defaults follow the official code, which the
pairlab spec (methods-representation §9) chose because the README formula is the ambiguous one:

- MV-InfoNCE ``include_same_view_negatives=True`` (code): ``den_i`` contains the same-view negatives
  ``(m = l, j != i)``. ``False`` is the README form: only the other views ``m != l`` (all samples).
- MV-DHEL ``include_self_energy=False`` (code): ``E_il`` excludes ``j = i``. ``True`` is the README
  form ``sum_{j in [B]}``, which adds ``exp(1/tau)`` (cosine) to every energy.

Defaults: ``tau = 0.5`` (the paper's CIFAR / ImageNet-100 configs; 0.1 on ImageNet-1K), cosine.
Both losses use the local batch only (the official gather is not reproduced).
"""

from __future__ import annotations

import math

import torch

from pairlab._validate import check_embeddings
from pairlab.nce import nce
from pairlab.objectives.base import ContrastiveObjective
from pairlab.registry import register
from pairlab.scores import prepare


def _views_checked(obj: ContrastiveObjective, z: torch.Tensor) -> torch.Tensor:
    check_embeddings("z", z, 3, "[B, K, D]")
    if z.shape[1] < 2:
        raise ValueError(f"z needs K >= 2 views per sample, got shape {tuple(z.shape)}")
    if z.shape[0] < 2:
        raise ValueError(f"z needs at least 2 samples (negatives), got shape {tuple(z.shape)}")
    return prepare(z, obj.similarity)


@register("objectives", "mv-infonce", input="views", paper="Koromilas et al. 2025 (arXiv 2507.06979)")
class MVInfoNCE(ContrastiveObjective):
    """Multi-view InfoNCE: all ``K(K-1)`` view pairs of a sample share one partition.

    Args:
        temperature: ``tau`` (paper configs: 0.5 on CIFAR / IN-100, 0.1 on IN-1K).
        include_same_view_negatives: ``True`` (official code, default) puts the same-view negatives
            in the denominator; ``False`` is the README formula (other views only).
        similarity: ``"cosine"`` (paper) or ``"dot"``.

    Examples:
        >>> loss = MVInfoNCE(temperature=0.5)(torch.randn(64, 4, 32))    # [B, K, D]
    """

    def __init__(
        self,
        temperature: float = 0.5,
        include_same_view_negatives: bool = True,
        similarity: str = "cosine",
        **kw,
    ):
        super().__init__(temperature, similarity, **kw)
        self.include_same_view_negatives = bool(include_same_view_negatives)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z: [B, K, D]``; ``labels`` is accepted for the uniform interface and ignored."""
        u = _views_checked(self, z)
        b, k, _ = u.shape
        scores = torch.einsum("ild,jmd->iljm", u, u) * self.temperature.scale()  # [B, K, B, K]
        dev = u.device
        same_sample = torch.eye(b, dtype=torch.bool, device=dev)[:, None, :, None]
        same_view = torch.eye(k, dtype=torch.bool, device=dev)[None, :, None, :]
        targets = (same_sample & ~same_view).expand(b, k, b, k)
        valid = ~(same_sample & same_view) if self.include_same_view_negatives else ~same_view
        valid = valid.expand(b, k, b, k)
        result = nce(
            scores.reshape(b, -1), targets.reshape(b, -1), valid.reshape(b, -1),
            aggregation="log_mean", on_no_positive=self.on_no_positive,
        )
        # nce's log_mean divides the positive mass by its count K(K-1); the paper sums it.
        result.loss = result.loss - math.log(k * (k - 1))
        result.per_anchor = result.per_anchor - math.log(k * (k - 1))
        return self._record(result)

    def extra_repr(self) -> str:
        return f"tau={self.temperature.value:.4g}, include_same_view_negatives={self.include_same_view_negatives}"


@register("objectives", "mv-dhel", input="views", paper="Koromilas et al. 2025 (arXiv 2507.06979)")
class MVDHEL(ContrastiveObjective):
    """Multi-view decoupled hyperspherical energy loss: per-view uniformity, all-pairs alignment.

    Args:
        temperature: ``tau`` (paper configs: 0.5 on CIFAR / IN-100, 0.1 on IN-1K).
        include_self_energy: ``False`` (official code, default) excludes ``j = i`` from each
            within-view energy; ``True`` is the README formula.
        similarity: ``"cosine"`` (paper) or ``"dot"``.

    Examples:
        >>> loss = MVDHEL(temperature=0.5)(torch.randn(64, 4, 32))       # [B, K, D]
    """

    def __init__(
        self,
        temperature: float = 0.5,
        include_self_energy: bool = False,
        similarity: str = "cosine",
        **kw,
    ):
        super().__init__(temperature, similarity, **kw)
        self.include_self_energy = bool(include_self_energy)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z: [B, K, D]``; ``labels`` is accepted for the uniform interface and ignored."""
        u = _views_checked(self, z)
        b, k, _ = u.shape
        scale = self.temperature.scale()
        dev = u.device
        # alignment: logsumexp over the unordered view pairs l < m of each sample
        cross = torch.einsum("ild,imd->ilm", u, u) * scale  # [B, K, K]
        upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=dev), diagonal=1)
        log_num = torch.logsumexp(cross[:, upper], dim=1)  # [B]
        # uniformity: one partition per view, within the view
        within = torch.einsum("ild,jld->lij", u, u) * scale  # [K, B, B]
        if not self.include_self_energy:
            eye = torch.eye(b, dtype=torch.bool, device=dev)
            within = within.masked_fill(eye, float("-inf"))
        log_energy = torch.logsumexp(within, dim=2).sum(dim=0)  # [B]: sum_l log E_il
        per_anchor = log_energy - log_num
        with torch.no_grad():
            off = ~torch.eye(b, dtype=torch.bool, device=dev)
            self.last_stats = {
                "anchors": float(b),
                "anchors_used": float(b),
                "pos_score_mean": float(cross[:, upper].mean()),
                "neg_score_mean": float(within[:, off].mean()),
            }
        return per_anchor.mean()

    def extra_repr(self) -> str:
        return f"tau={self.temperature.value:.4g}, include_self_energy={self.include_self_energy}"
