"""AMCL: adaptive multi-head contrastive learning (multiple heads, learned bounded pair temperatures).

Paper: Wang, Koniusz, Gedeon, Zheng, "Adaptive Multi-head Contrastive Learning", ECCV 2024,
arXiv 2310.05615. The official code (``LeiWangR/cl``) does not run and has no negatives; this
implements the paper's Table 2 formulas (SimCLR/MoCo Eq. 2.1 and the InfoNCE variant Eq. 2.4).

For ``C`` heads, head features ``z^c`` (cosine ``sim``), a temperature network
``tau(x, y) = l + (u - l) * sigmoid(phi([x; y]))`` (``phi``: Linear(2d', hidden)-ReLU-Linear(hidden, 1)),
and ``Omega(tau) = 1/tau + c_Omega * log tau``, the loss of anchor ``i`` is::

    l_i = sum_c [ -sim(z_i^c, z_i^{c+}) / tau_i^{c+}  +  max_n sim(z_i^c, z_n^{c-}) / tau_{i n*}^{c-}
                  + beta * Omega(tau_i^{c+}) - beta * Omega(tau_{i n*}^{c-}) ]

``n*`` is the hardest negative (``variant="simclr"``) or the most similar of the positive and the
negatives (``variant="infonce"``); it is chosen on detached similarities and then gathered, so the
gradient flows through the selected similarity and temperature only. The loss is summed over heads
(paper ``sum_c``) and averaged over the ``2B`` anchors (both views of every sample); the negatives of
an anchor are the ``2B - 2`` rows that are neither itself nor its positive.

Heads: ``forward(z)`` with ``z: [B, 2, C, d']`` (one projection head per ``c``), or ``z: [B, 2, D]``
split into ``heads`` equal chunks (``D = heads * d'``), which is how the training loop drives it from a
single projector. Each head is L2-normalised on its own.

Defaults and choices (flagged):
    - ``beta = 0.1``, bounds ``[lower, upper] = [1e-3, 2.0]``: the official ``l = 1e-5`` makes
      ``1/tau = 1e5`` (an fp16/fp32 hazard); without bounds the objective is unbounded in ``tau``.
    - ``Omega``: the official code's ``(M/2) log tau + 1/tau`` with ``M`` read as the head width
      ``d'`` (``omega_log_coef=None``); ``(d' - 1)/2`` is the von Mises-Fisher value. Interpretation
      of the official code; the paper names the term ``Omega`` only.
    - ``share_temperature_mlp=True``: one ``phi`` for all heads (paper figure); ``False`` builds one
      per head (official code).
    - ``fixed_temperature``: ignore ``phi`` and use a constant ``tau`` (the ``Omega`` terms then
      cancel), giving the max-negative triplet form ``-s+/tau + max s-/tau``.
"""

from __future__ import annotations

import torch
from torch import nn

from pairlab._validate import check_choice, check_embeddings, check_positive
from pairlab.registry import register
from pairlab.scores import normalize

VARIANTS = ("simclr", "infonce")


class PairTemperature(nn.Module):
    """``tau(x, y) = lower + (upper - lower) * sigmoid(phi([x; y]))`` for feature pairs ``[..., d']``."""

    def __init__(self, head_dim: int, hidden: int = 128, lower: float = 1e-3, upper: float = 2.0):
        super().__init__()
        self.lower, self.upper = lower, upper
        self.phi = nn.Sequential(nn.Linear(2 * head_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, y], dim=-1).to(self.phi[0].weight.dtype)
        return self.lower + (self.upper - self.lower) * torch.sigmoid(self.phi(h)).squeeze(-1)


@register("objectives", "amcl", input="views", paper="Wang et al. 2024 (ECCV, arXiv 2310.05615)")
class AMCL(nn.Module):
    """Multi-head contrastive loss with adaptive, bounded per-pair temperatures.

    Args:
        dim: total embedding width ``D`` of a ``[B, 2, D]`` input (or ``C * d'``); 64 matches the
            training loop's default ``model.proj_dim``.
        heads: number of heads ``C`` (official default 3).
        beta: weight of the ``Omega`` regulariser (0.1).
        lower, upper: temperature bounds (``1e-3``, ``2.0``).
        hidden: width of the temperature MLP (128).
        share_temperature_mlp: one temperature MLP for all heads (paper) or one per head (code).
        omega_log_coef: ``c_Omega``; ``None`` = ``d' / 2``.
        variant: ``"simclr"`` (max over negatives) or ``"infonce"`` (max over positive + negatives).
        fixed_temperature: use a constant ``tau`` instead of the network.

    ``last_stats`` holds the mean learned ``tau+`` / ``tau-`` and the mean positive / hardest-negative
    similarity per call. :meth:`pair_stats` returns them per anchor for diagnostics.

    Examples:
        >>> loss_fn = AMCL(dim=96, heads=3)
        >>> loss = loss_fn(torch.randn(64, 2, 96))           # split into 3 heads of 32
    """

    def __init__(
        self,
        dim: int = 64,
        heads: int = 4,
        beta: float = 0.1,
        lower: float = 1e-3,
        upper: float = 2.0,
        hidden: int = 128,
        share_temperature_mlp: bool = True,
        omega_log_coef: float | None = None,
        variant: str = "simclr",
        fixed_temperature: float | None = None,
    ):
        super().__init__()
        if not isinstance(heads, int) or heads < 1:
            raise ValueError(f"heads must be an integer >= 1, got {heads!r}")
        if not isinstance(dim, int) or dim < heads or dim % heads:
            raise ValueError(f"dim must be a positive multiple of heads={heads}, got {dim!r}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.beta = float(beta)
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.lower = check_positive("lower", lower)
        self.upper = check_positive("upper", upper)
        if not self.lower < self.upper:
            raise ValueError(f"lower must be < upper, got lower={lower}, upper={upper}")
        self.omega_log_coef = self.head_dim / 2 if omega_log_coef is None else float(omega_log_coef)
        self.variant = check_choice("variant", variant, VARIANTS)
        self.fixed_temperature = None if fixed_temperature is None else check_positive(
            "fixed_temperature", fixed_temperature)
        self.share_temperature_mlp = bool(share_temperature_mlp)
        n_nets = 1 if share_temperature_mlp else heads
        self.temperature_nets = nn.ModuleList(
            [PairTemperature(self.head_dim, hidden, self.lower, self.upper) for _ in range(n_nets)]
        )
        self.last_stats: dict[str, float] = {}

    def omega(self, tau: torch.Tensor) -> torch.Tensor:
        return 1.0 / tau + self.omega_log_coef * torch.log(tau)

    def _tau(self, c: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.fixed_temperature is not None:
            return torch.full(x.shape[:-1], self.fixed_temperature, dtype=x.dtype, device=x.device)
        net = self.temperature_nets[0 if self.share_temperature_mlp else c]
        return net(x, y).to(x.dtype)

    def _heads(self, z: torch.Tensor) -> torch.Tensor:
        if isinstance(z, torch.Tensor) and z.ndim == 4:
            check_embeddings("z", z, 4, "[B, 2, C, d']")
            if z.shape[2] != self.heads or z.shape[3] != self.head_dim:
                raise ValueError(f"z must have shape [B, 2, {self.heads}, {self.head_dim}] (heads, head_dim), "
                                 f"got {tuple(z.shape)}")
        else:
            check_embeddings("z", z, 3, "[B, 2, D] or [B, 2, C, d']")
            if z.shape[2] != self.dim:
                raise ValueError(f"z must have D = dim = {self.dim} (split into {self.heads} heads), "
                                 f"got shape {tuple(z.shape)}")
            z = z.reshape(z.shape[0], z.shape[1], self.heads, self.head_dim)
        if z.shape[1] != 2:
            raise ValueError(f"AMCL takes exactly 2 views per sample, got shape {tuple(z.shape)}")
        if z.shape[0] < 2:
            raise ValueError(f"z needs at least 2 samples (negatives), got shape {tuple(z.shape)}")
        return normalize(z)

    def pair_stats(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-anchor, per-head ``s+``, ``s-`` (hardest), ``tau+``, ``tau-``: each ``[2B, C]``."""
        u = self._heads(z)
        b = u.shape[0]
        f = u.reshape(2 * b, self.heads, self.head_dim)  # sample-major rows: b*2 + view
        idx = torch.arange(2 * b, device=u.device)
        pos_idx = idx ^ 1  # the other view of the same sample
        sims = torch.einsum("icd,jcd->cij", f, f)  # [C, 2B, 2B]
        excluded = torch.zeros(2 * b, 2 * b, dtype=torch.bool, device=u.device)
        excluded[idx, idx] = True
        if self.variant == "simclr":
            excluded[idx, pos_idx] = True
        n_star = sims.detach().masked_fill(excluded, float("-inf")).argmax(dim=2)  # [C, 2B]
        out: dict[str, list[torch.Tensor]] = {"s_pos": [], "s_neg": [], "tau_pos": [], "tau_neg": []}
        for c in range(self.heads):
            fc = f[:, c]
            out["s_pos"].append(sims[c, idx, pos_idx])
            out["s_neg"].append(sims[c, idx, n_star[c]])
            out["tau_pos"].append(self._tau(c, fc, fc[pos_idx]))
            out["tau_neg"].append(self._tau(c, fc, fc[n_star[c]]))
        return {k: torch.stack(v, dim=1) for k, v in out.items()}

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z: [B, 2, D]`` or ``[B, 2, C, d']``; ``labels`` is accepted and ignored."""
        st = self.pair_stats(z)
        per = (-st["s_pos"] / st["tau_pos"] + st["s_neg"] / st["tau_neg"]
               + self.beta * (self.omega(st["tau_pos"]) - self.omega(st["tau_neg"])))
        with torch.no_grad():
            self.last_stats = {k + "_mean": float(v.mean()) for k, v in st.items()}
        return per.sum(dim=1).mean()

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, head_dim={self.head_dim}, beta={self.beta}, bounds=[{self.lower}, "
                f"{self.upper}], variant={self.variant!r}, shared_mlp={self.share_temperature_mlp}")
