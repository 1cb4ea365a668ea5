"""SupReMix mixtures: anchor-inclusive hard negatives and anchor-exclusive hard positives for regression.

Paper: Wu, Dong, Chen, Zhou, Zhou, "Mixup Your Own Pairs" (SupReMix), arXiv 2309.16633. Official code:
``yilei-wu/SupReMix``; full code in the fork ``Dingyijiang1/Mixup-Your-Own-Pairs`` (``train_supremix.py::mixing_func``).

For embeddings ``F [M, d]`` with regression targets ``t [M]`` and every anchor ``i``:

- **mix-neg** (anchor-inclusive): for every ``k != i`` with ``t_k != t_i``, ``alpha ~ Beta(a, b)`` i.i.d.::

      m = alpha F_i + (1 - alpha) F_k,       label = alpha t_i + (1 - alpha) t_k,       a negative

- **mix-pos** (anchor-exclusive): for every pair ``t_j < t_i < t_k`` with ``t_i - t_j < n`` and ``t_k - t_i < n``::

      alpha = clamp((t_k - t_i) / max(t_k - t_j, 1e-9), 0, 1),  m = alpha F_j + (1 - alpha) F_k,  label = t_i

  so the mixture's label equals the anchor's exactly; a positive.

Mixtures are detached constants and are not re-normalised (``||m|| <= 1``). Defaults: ``Beta(2, 8)`` (the
official code's default ``--beta 0``; its help text's mapping contradicts the code, the code wins), window
``n = 5`` (AgeDB). Deviation: the official code builds a dense ``[M, M, M, d]`` tensor (8.6 GB at batch
128); here triples are enumerated sparsely (``O(#triples * d)``), optionally capped per anchor by a random
subset (``max_neg_mix``, ``max_pos_mix``). Randomness (Beta draws, caps) uses torch's global RNG.

Examples:
    >>> mixer = SupReMixCandidates(window=5.0)
    >>> mix = mixer(f, t)                   # Mixtures: anchor, j, k, alpha, emb, label, positive
    >>> emb, label, positive, valid = mix.padded(f.shape[0])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pairlab._validate import check_embeddings, check_positive, check_tensor
from pairlab.registry import register


@dataclass
class Mixtures:
    """Synthesised candidates, one row per (anchor, mixture): ``m = alpha F_j + (1 - alpha) F_k``.

    ``anchor, j, k: [R]`` long, ``alpha, label: [R]``, ``emb: [R, d]`` (detached), ``positive: [R]`` bool.
    Rows are sorted by anchor.
    """

    anchor: torch.Tensor
    j: torch.Tensor
    k: torch.Tensor
    alpha: torch.Tensor
    emb: torch.Tensor
    label: torch.Tensor
    positive: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchor.shape[0])

    def padded(self, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-anchor padded ``(emb [M, R, d], label [M, R], positive [M, R], valid [M, R])``."""
        counts = torch.bincount(self.anchor, minlength=m)
        r = int(counts.max()) if len(self) else 0
        start = torch.cumsum(counts, 0) - counts
        col = torch.arange(len(self), device=self.anchor.device) - start[self.anchor]
        d = self.emb.shape[-1]
        emb = self.emb.new_zeros(m, r, d)
        label = self.label.new_zeros(m, r)
        positive = torch.zeros(m, r, dtype=torch.bool, device=self.anchor.device)
        valid = torch.zeros(m, r, dtype=torch.bool, device=self.anchor.device)
        emb[self.anchor, col] = self.emb
        label[self.anchor, col] = self.label
        positive[self.anchor, col] = self.positive
        valid[self.anchor, col] = True
        return emb, label, positive, valid


def _cap(mask: torch.Tensor, cap: int | None) -> torch.Tensor:
    """Keep at most ``cap`` random True entries per row of a bool matrix."""
    if cap is None or mask.shape[-1] <= cap:
        return mask
    keys = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, 2.0)
    idx = keys.topk(cap, dim=-1, largest=False).indices
    out = torch.zeros_like(mask)
    out.scatter_(-1, idx, True)
    return out & mask


@register("candidates", "supremix", input="regression", paper="Wu et al. 2023 (SupReMix)")
class SupReMixCandidates:
    """Build SupReMix mixtures for embeddings ``f [M, d]`` and float targets ``t [M]``.

    Args:
        window: ``n``, the largest target gap of a mix-positive's partners (AgeDB/IMDB 5, STS-B 1).
        beta: ``(a, b)`` of the mix-negative ``alpha ~ Beta(a, b)`` (official default (2, 8)).
        mix_neg, mix_pos: build each kind.
        max_neg_mix, max_pos_mix: optional random cap of mixtures per anchor (None = all triples).
    """

    def __init__(
        self,
        window: float = 5.0,
        beta: tuple[float, float] = (2.0, 8.0),
        mix_neg: bool = True,
        mix_pos: bool = True,
        max_neg_mix: int | None = None,
        max_pos_mix: int | None = None,
    ):
        self.window = check_positive("window", window)
        if len(beta) != 2:
            raise ValueError(f"beta must be a pair (a, b), got {beta!r}")
        self.beta = (check_positive("beta[0]", beta[0]), check_positive("beta[1]", beta[1]))
        self.mix_neg, self.mix_pos = bool(mix_neg), bool(mix_pos)
        for name, v in (("max_neg_mix", max_neg_mix), ("max_pos_mix", max_pos_mix)):
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {v!r}")
        self.max_neg_mix, self.max_pos_mix = max_neg_mix, max_pos_mix

    def __call__(self, f: torch.Tensor, t: torch.Tensor) -> Mixtures:
        check_embeddings("f", f, 2, "[M, d]")
        t = check_tensor("t", t)
        if not t.dtype.is_floating_point or t.ndim != 1 or t.shape[0] != f.shape[0]:
            raise ValueError(f"t must be a float tensor of shape [{f.shape[0]}], got {tuple(t.shape)} {t.dtype}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("t (regression targets) contains NaN or Inf")
        f = f.detach()
        t = t.detach().to(f.dtype if f.dtype in (torch.float32, torch.float64) else torch.float32)
        m, dev = f.shape[0], f.device
        ar = torch.arange(m, device=dev)
        parts: list[tuple[torch.Tensor, ...]] = []
        if self.mix_neg:
            neg = _cap((t[:, None] != t[None, :]) & (ar[:, None] != ar[None, :]), self.max_neg_mix)
            i, k = neg.nonzero(as_tuple=True)
            alpha = torch.distributions.Beta(*self.beta).sample((i.shape[0],)).to(device=dev, dtype=t.dtype)
            parts.append((i, i, k, alpha, alpha * t[i] + (1 - alpha) * t[k], torch.zeros_like(i, dtype=torch.bool)))
        if self.mix_pos:
            diff = t[:, None] - t[None, :]  # [i, j] = t_i - t_j
            lower = (diff > 0) & (diff < self.window)  # t_j < t_i, gap < n
            upper = (diff < 0) & (-diff < self.window)  # t_k > t_i, gap < n
            ii, jj, kk = [], [], []
            for a in range(m):
                js, ks = lower[a].nonzero().flatten(), upper[a].nonzero().flatten()
                if len(js) == 0 or len(ks) == 0:
                    continue
                jg, kg = torch.meshgrid(js, ks, indexing="ij")
                jg, kg = jg.flatten(), kg.flatten()
                if self.max_pos_mix is not None and jg.shape[0] > self.max_pos_mix:
                    keep = torch.randperm(jg.shape[0], device=dev)[: self.max_pos_mix]
                    jg, kg = jg[keep], kg[keep]
                ii.append(torch.full_like(jg, a))
                jj.append(jg)
                kk.append(kg)
            if ii:
                i, j, k = torch.cat(ii), torch.cat(jj), torch.cat(kk)
                alpha = ((t[k] - t[i]) / (t[k] - t[j]).clamp_min(1e-9)).clamp(0, 1)
                parts.append((i, j, k, alpha, t[i].clone(), torch.ones_like(i, dtype=torch.bool)))
        if not parts:
            empty = torch.zeros(0, dtype=torch.long, device=dev)
            return Mixtures(empty, empty, empty, t.new_zeros(0), f.new_zeros(0, f.shape[1]), t.new_zeros(0),
                            torch.zeros(0, dtype=torch.bool, device=dev))
        i, j, k, alpha, label, positive = (torch.cat(x) for x in zip(*parts, strict=True))
        order = torch.argsort(i, stable=True)
        i, j, k, alpha, label, positive = i[order], j[order], k[order], alpha[order], label[order], positive[order]
        a = alpha.to(f.dtype)[:, None]
        emb = a * f[j] + (1 - a) * f[k]
        return Mixtures(i, j, k, alpha, emb, label, positive)
