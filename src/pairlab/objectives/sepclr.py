"""SepCLR: separating common from salient patterns (contrastive analysis, background vs target data).

Paper: Louiset, Duchesnay, Grigis, Gori, "Separating common from salient patterns with Contrastive
Representation Learning", ICLR 2024. Official code: ``neurospin-projects/2024_rlouiset_sep_clr``
(``losses.py``, ``*/sep_clr_k-jem.py``).

Inputs: two views of the common head ``c: [B, 2, Dc]`` and of the salient head ``s: [B, 2, Ds]`` and a
bool ``target: [B]`` (True = target sample, False = background). With ``tau = 0.5``::

    align(x, y) = mean_i ||x_i - y_i||^2 / (2 tau)
    unif(x)     = log mean_{i<j} exp(-||x_i - x_j||^2 / (2 tau))
    s'_v        = s_v with background rows set to 0 (gradient still flows through target rows)

    L_common   = align(n c1, n c2) + unif(n c1) + unif(n c2)                (n = L2-normalise)
    L_salient  = align(s1[tgt], s2[tgt]) + unif(s'1) + unif(s'2)            (salient NOT normalised)
    L_infoless = 1/2 [align(s'1[bg], s1[bg]) + align(s'2[bg], s2[bg])]      (= ||s[bg]||^2 / (2 tau))
    L_kJEM     = 1/2 sum_v mean_i log mean_j exp(-(||n c_vi - n c_vj||^2 + ||s'_vi - s'_vj||^2) / (2 tau))
    L = L_common + beta_s L_salient + beta_reg L_infoless + lambda_jem L_kJEM

(the official ``2 * 1/2 [unif + unif]`` is written as the sum). ``j`` includes ``i`` in k-JEM, so the log
never sees 0. All log-means are logsumexps. Defaults: CIFAR-MNIST/CelebA ``beta_s = beta_reg = 1000``,
``lambda_jem = 10`` (CheXpert 1/10/10, ODIR 1/100/10), ``tau = 0.5``.

A batch without background or without target samples makes the masked means empty: it raises a
``ValueError`` (use a balanced sampler). Registry ``input="background_target"``: ``obj(c, s, target)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pairlab._validate import check_embeddings, check_positive, check_same_batch, check_tensor
from pairlab.registry import register
from pairlab.scores import normalize


def align(x: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    return ((x - y) ** 2).sum(1).mean() / (2 * tau)


def _sq_dists(x: torch.Tensor) -> torch.Tensor:
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def unif(x: torch.Tensor, tau: float) -> torch.Tensor:
    """``log mean_{i<j} exp(-||x_i - x_j||^2 / (2 tau))`` as a logsumexp over distinct pairs."""
    n = x.shape[0]
    iu = torch.triu_indices(n, n, 1, device=x.device)
    d2 = _sq_dists(x)[iu[0], iu[1]]
    return torch.logsumexp(-d2 / (2 * tau), 0) - math.log(d2.shape[0])


def kjem(c: torch.Tensor, s: torch.Tensor, tau: float) -> torch.Tensor:
    """``mean_i log mean_j exp(-(||c_i - c_j||^2 + ||s_i - s_j||^2) / (2 tau))`` (``j`` includes ``i``)."""
    logk = -(_sq_dists(c) + _sq_dists(s)) / (2 * tau)
    return (torch.logsumexp(logk, 1) - math.log(c.shape[0])).mean()


@register(
    "objectives", "sepclr", input="background_target", paper="Louiset et al. 2024 (SepCLR, ICLR)",
    summary="Common vs salient contrastive spaces for background/target data (k-JEM variant)",
)
class SepCLR(nn.Module):
    """SepCLR loss (k-JEM variant).

    Args:
        temperature: ``tau`` (0.5).
        beta_s, beta_reg, lambda_jem: term weights (CIFAR-MNIST: 1000, 1000, 10).

    ``last_stats``: each term and ``bg_salient_norm`` / ``tgt_salient_norm`` (mean ``||s||``).

    Examples:
        >>> loss = SepCLR()(torch.randn(16, 2, 32), torch.randn(16, 2, 32), torch.arange(16) % 2 == 1)
    """

    def __init__(
        self, temperature: float = 0.5, beta_s: float = 1000.0, beta_reg: float = 1000.0, lambda_jem: float = 10.0
    ):
        super().__init__()
        self.tau = check_positive("temperature", temperature)
        for name, v in (("beta_s", beta_s), ("beta_reg", beta_reg), ("lambda_jem", lambda_jem)):
            if not float(v) >= 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.beta_s, self.beta_reg, self.lambda_jem = float(beta_s), float(beta_reg), float(lambda_jem)
        self.last_stats: dict[str, float] = {}

    def forward(self, c: torch.Tensor, s: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``c: [B, 2, Dc]`` common heads, ``s: [B, 2, Ds]`` salient heads, ``target: [B]`` bool (1 = target)."""
        check_embeddings("c", c, 3, "[B, 2, Dc]")
        check_embeddings("s", s, 3, "[B, 2, Ds]")
        check_same_batch(("c", "s"), (c, s))
        if c.shape[1] != 2 or s.shape[1] != 2:
            raise ValueError(f"c and s need exactly 2 views: got c {tuple(c.shape)}, s {tuple(s.shape)}")
        target = check_tensor("target", target)
        if target.shape != (c.shape[0],) or target.dtype.is_floating_point:
            raise ValueError(f"target must be a bool/integer tensor of shape [{c.shape[0]}], "
                             f"got {tuple(target.shape)} {target.dtype}")
        if target.dtype != torch.bool:
            if bool(((target != 0) & (target != 1)).any()):
                raise ValueError("target must hold 0 (background) or 1 (target) only")
            target = target.bool()
        target = target.to(c.device)
        n_t = int(target.sum())
        if n_t == 0 or n_t == target.shape[0]:
            raise ValueError(f"the batch needs background and target samples, got {n_t} target of {target.shape[0]}")
        if target.shape[0] < 2:
            raise ValueError("the batch needs at least 2 samples")
        tau = self.tau
        dt = torch.float64 if torch.float64 in (c.dtype, s.dtype) else torch.float32
        c, s = c.to(dt), s.to(dt)
        cn = normalize(c)
        s_prime = torch.where(target[:, None, None], s, torch.zeros_like(s))
        bg = ~target
        l_common = align(cn[:, 0], cn[:, 1], tau) + unif(cn[:, 0], tau) + unif(cn[:, 1], tau)
        l_salient = align(s[target, 0], s[target, 1], tau) + unif(s_prime[:, 0], tau) + unif(s_prime[:, 1], tau)
        l_infoless = 0.5 * (align(s_prime[bg, 0], s[bg, 0], tau) + align(s_prime[bg, 1], s[bg, 1], tau))
        l_jem = 0.5 * (kjem(cn[:, 0], s_prime[:, 0], tau) + kjem(cn[:, 1], s_prime[:, 1], tau))
        loss = l_common + self.beta_s * l_salient + self.beta_reg * l_infoless + self.lambda_jem * l_jem
        with torch.no_grad():
            norms = s.norm(dim=-1).mean(1)
            self.last_stats = {
                "common": float(l_common), "salient": float(l_salient), "infoless": float(l_infoless),
                "kjem": float(l_jem), "bg_salient_norm": float(norms[bg].mean()),
                "tgt_salient_norm": float(norms[target].mean()),
            }
        return loss
