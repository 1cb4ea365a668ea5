"""SupReMix: supervised contrastive regression with mixture hard negatives and hard positives.

Paper: Wu, Dong, Chen, Zhou, Zhou, "Mixup Your Own Pairs", arXiv 2309.16633. Official code: fork
``Dingyijiang1/Mixup-Your-Own-Pairs`` (``agedb-dir/supremix_loss.py::SupConLoss_v2``).

The one equation (:func:`pairlab.nce.nce`, SupCon L_out) over real candidates plus the per-anchor mixtures
of :class:`pairlab.candidates.supremix.SupReMixCandidates` (``M = B*K`` views, ``T`` the temperature)::

    s_ij = F_i . F_j / T   (j != i),          s_ir = m_ir . F_i / T   (the anchor's mixtures)
    P    = [t_i == t_j exactly]  on real columns,  mix-positives on mixture columns
    W    = dist(|t_i - t_j|) on real,  dist(|t_i - label_ir|) on mixtures   ("distance magnifying")
    loss_i = -mean_{positives} s + log sum_{all valid} W exp(s)

``dist`` is ``"L1_inv"`` (``|d| + 1``, default), ``"L2_inv"`` (``d^2 + 1``), ``"L1"`` (``1/(|d|+1)``), ``"L2"``
(``1/(d^2+1)``) or ``None`` (W = 1). W multiplies every partition term, positives included; the numerator is
unweighted. Mean over anchors with a positive (the official code gives NaN for the others).

Defaults (AgeDB): ``T = 0.5``, window ``n = 5``, ``Beta(2, 8)``, L1_inv weights. Deviations, each decided in
the spec: (1) one consistent logsumexp over real and mixture logits; ``official_shift=True`` reproduces the
official code's separate max-shifts of the two blocks (real by its row max including self, mixtures by the
row max over the anchor's mixtures), which over-weights mixtures by ``exp(max_real - max_mix)``; (2) mixture
labels stay aligned with their mixtures (the official ``compress_mixtures`` sorts labels separately);
(3) sparse triples instead of the ``O((2B)^3 d)`` tensor. (The official ``L2_inv`` mixture weight
``(t_i - label + 1)^2 + 1`` has a misplaced ``+ 1``; pairlab uses ``d^2 + 1`` on both blocks.)

Input: ``obj(z, targets)`` with ``z: [B, K, D]`` (K = 2 in the paper; flattened sample-major) and float
``targets: [B]`` (registry ``input="regression"``).
"""

from __future__ import annotations

import torch

from pairlab import pairs
from pairlab._validate import check_choice, check_embeddings, check_tensor
from pairlab.candidates.supremix import Mixtures, SupReMixCandidates
from pairlab.nce import nce
from pairlab.objectives.base import ContrastiveObjective
from pairlab.registry import register
from pairlab.scores import prepare

DISTANCES = ("L1_inv", "L2_inv", "L1", "L2")


def distance_weight(delta: torch.Tensor, distance: str | None) -> torch.Tensor:
    """SupReMix's distance-magnifying weight of a target gap ``delta``."""
    d = delta.abs()
    if distance is None:
        return torch.ones_like(d)
    if distance == "L1_inv":
        return d + 1
    if distance == "L2_inv":
        return d**2 + 1
    if distance == "L1":
        return 1 / (d + 1)
    return 1 / (d**2 + 1)


@register(
    "objectives", "supremix", input="regression", paper="Wu et al. 2023 (SupReMix)",
    summary="Supervised contrastive regression with mix-negatives and mix-positives",
)
class SupReMix(ContrastiveObjective):
    """SupReMix loss.

    Args:
        temperature: ``T`` (AgeDB 0.5, IMDB-WIKI 0.3, STS-B 0.1).
        window, beta, mix_neg, mix_pos, max_neg_mix, max_pos_mix: mixture construction, see
            :class:`~pairlab.candidates.supremix.SupReMixCandidates`.
        distance: ``"L1_inv"`` (default), ``"L2_inv"``, ``"L1"``, ``"L2"`` or ``None`` (no weights).
        official_shift: reproduce the official separate max-shift of real and mixture logits.

    ``last_stats`` adds ``mixtures``, ``mix_pos``, ``mix_neg`` counts.

    Examples:
        >>> loss = SupReMix(temperature=0.5)(torch.randn(16, 2, 32), torch.rand(16) * 10)
    """

    def __init__(
        self,
        temperature: float = 0.5,
        window: float = 5.0,
        beta: tuple[float, float] = (2.0, 8.0),
        distance: str | None = "L1_inv",
        mix_neg: bool = True,
        mix_pos: bool = True,
        max_neg_mix: int | None = None,
        max_pos_mix: int | None = None,
        official_shift: bool = False,
        similarity: str = "cosine",
        **kw,
    ):
        super().__init__(temperature, similarity, **kw)
        if distance is not None:
            check_choice("distance", distance, DISTANCES)
        self.distance = distance
        self.official_shift = bool(official_shift)
        self.mixer = SupReMixCandidates(window, beta, mix_neg, mix_pos, max_neg_mix, max_pos_mix)

    def forward(self, z: torch.Tensor, targets: torch.Tensor, *, mixtures: Mixtures | None = None) -> torch.Tensor:
        """``z: [B, K, D]``, ``targets: [B]`` float; ``mixtures`` overrides the sampled ones (rows of the
        flattened ``[B*K, D]`` views, e.g. from ``SupReMixCandidates`` on ``prepare(z.reshape(-1, D))``)."""
        check_embeddings("z", z, 3, "[B, K, D]")
        b, k, d = z.shape
        targets = check_tensor("targets", targets)
        if not targets.dtype.is_floating_point or targets.shape != (b,):
            raise ValueError(f"targets must be a float tensor of shape [{b}], got {tuple(targets.shape)} "
                             f"{targets.dtype}")
        f = prepare(z.reshape(b * k, d), self.similarity)
        t = targets.to(f).repeat_interleave(k)
        m = b * k
        if mixtures is None:
            mixtures = self.mixer(f, t)
        emb, label, mpos, mvalid = mixtures.padded(m)
        scale = self.temperature.scale()
        real = (f @ f.T) * scale
        mix = torch.einsum("mrd,md->mr", emb.to(f), f) * scale
        valid_real = pairs.not_self(m, device=f.device)
        if self.official_shift:
            real = real - real.max(dim=1, keepdim=True).values.detach()
            mmax = mix.masked_fill(~mvalid, float("-inf")).max(dim=1, keepdim=True).values if mix.shape[1] else None
            if mmax is not None:
                mix = mix - torch.where(torch.isfinite(mmax), mmax, torch.zeros_like(mmax)).detach()
        scores = torch.cat([real, mix], dim=1)
        targets_p = torch.cat([(t[:, None] == t[None, :]) & valid_real, mpos], dim=1)
        valid = torch.cat([valid_real, mvalid], dim=1)
        weights = None
        if self.distance is not None:
            weights = torch.cat([distance_weight(t[:, None] - t[None, :], self.distance),
                                 distance_weight(t[:, None] - label.to(t), self.distance)], dim=1)
        res = nce(scores, targets_p, valid, weights, on_no_positive=self.on_no_positive)
        res.stats.update({"mixtures": float(len(mixtures)), "mix_pos": float(mixtures.positive.sum()),
                          "mix_neg": float((~mixtures.positive).sum())})
        return self._record(res)
