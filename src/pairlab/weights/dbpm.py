"""DBPM bad-pair memory: per-pair loss weights from a memory of past per-sample losses.

Paper: Lan, Yan, Hong, Feng, "Towards Enhancing Time Series Contrastive Learning: A Dynamic Bad Pair Mining
Approach", ICLR 2024. Official code: ``lanxiang1017/DynamicBadPairMining_ICLR24`` (``models/dbpm_model.py``).

Memory ``M [N, E]`` (dataset size x max epochs) stores the **unweighted**, detached per-sample loss of every
dataset index, once per epoch. At the start of epoch ``e >= warm_epochs``::

    m_i   = mean_{t < e} M[i, t]                                 (paper, memory_weighting="uniform")
    m_i   = mean_{t < e} ((t + 1) / E) * M[i, t]                 (official, memory_weighting="linear_epoch")
    mu, sigma = mean and population std of m over the indices seen so far
    noisy  (too easy):  m_i <= mu - beta_np * sigma
    faulty (too hard):  m_i >= mu + beta_fp * sigma

During the epoch a flagged pair's loss ``l_i`` is multiplied by the constant (detached) weight::

    w_i = exp(-(l_i - mu)^2 / (2 sigma^2))                       (paper: w in (0, 1], default)
    w_i = exp(-(l_i - mu)^2 / (2 sigma^2)) / (sigma sqrt(2 pi))  (official Gaussian pdf, pdf_weight=True;
                                                                  exceeds 1 when sigma < 0.4)

Unflagged pairs get ``w = 1``. Defaults: ``warm_epochs=50``, ``max_epochs=80``, ``beta_np=2``, ``beta_fp=3``
(official ``run.sh``). Deviations/choices: an index never recorded (or with missing epochs) is averaged over
the epochs it was seen (``nan``-mean) and never flagged if never seen; when ``sigma == 0`` nothing is
flagged (the thresholds would flag everyone and the weight would divide by 0).

This is a weights component with ``applies_to="anchor"``: the weights multiply per-pair loss terms and compose
with other anchor weights by multiplication. :class:`pairlab.objectives.dbpm.DBPM` uses it with SimCLR.
Under DDP :meth:`record` gathers the indices and losses of all ranks, so the memory is the same everywhere.

Examples:
    >>> mem = BadPairMemory(num_samples=1000, max_epochs=80, warm_epochs=50)
    >>> mem.set_epoch(epoch)                  # at the start of every epoch
    >>> mem.record(index, per_sample_loss)    # after the forward (training)
    >>> loss = (mem(index, per_sample_loss) * per_sample_loss).mean()
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pairlab import distributed
from pairlab._validate import check_choice, check_labels, check_tensor
from pairlab.registry import register

MEMORY_WEIGHTINGS = ("uniform", "linear_epoch")


def _check_nonneg(name: str, value: float) -> float:
    v = float(value)
    if not (v >= 0) or math.isinf(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return v


@register("weights", "dbpm", applies_to="anchor", paper="Lan et al. 2024 (DBPM, ICLR)")
class BadPairMemory(nn.Module):
    """Dynamic bad pair mining: memory of per-sample losses, thresholds and Gaussian down-weighting.

    Args:
        num_samples: dataset size ``N`` (indices passed to :meth:`record` lie in ``[0, N)``).
        max_epochs: ``E``, the memory width (and the denominator of the official epoch weighting).
        warm_epochs: epochs before any pair is flagged.
        beta_np, beta_fp: thresholds in population standard deviations for noisy / faulty pairs.
        memory_weighting: ``"uniform"`` (paper, default) or ``"linear_epoch"`` (official code).
        pdf_weight: use the official unnormalised Gaussian pdf as weight (can exceed 1).
    """

    def __init__(
        self,
        num_samples: int,
        max_epochs: int = 80,
        warm_epochs: int = 50,
        beta_np: float = 2.0,
        beta_fp: float = 3.0,
        memory_weighting: str = "uniform",
        pdf_weight: bool = False,
    ):
        super().__init__()
        for name, v in (("num_samples", num_samples), ("max_epochs", max_epochs)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(warm_epochs, int) or warm_epochs < 1:
            raise ValueError(f"warm_epochs must be an integer >= 1, got {warm_epochs!r}")
        self.num_samples, self.max_epochs, self.warm_epochs = num_samples, max_epochs, warm_epochs
        self.beta_np = _check_nonneg("beta_np", beta_np)
        self.beta_fp = _check_nonneg("beta_fp", beta_fp)
        self.memory_weighting = check_choice("memory_weighting", memory_weighting, MEMORY_WEIGHTINGS)
        self.pdf_weight = bool(pdf_weight)
        self.register_buffer("memory", torch.full((num_samples, max_epochs), float("nan"), dtype=torch.float64))
        self.register_buffer("noisy", torch.zeros(num_samples, dtype=torch.bool))
        self.register_buffer("faulty", torch.zeros(num_samples, dtype=torch.bool))
        self.register_buffer("mu", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("sigma", torch.tensor(float("nan"), dtype=torch.float64))
        self.epoch = 0
        self.last_stats: dict[str, float] = {}

    def _check_index(self, index: object, n: int) -> torch.Tensor:
        return check_labels("index", index, n, num_classes=self.num_samples).to(self.memory.device).long()

    def _check_losses(self, losses: object) -> torch.Tensor:
        losses = check_tensor("losses", losses)
        if losses.ndim != 1 or not losses.dtype.is_floating_point:
            raise ValueError(f"losses must be a float tensor of shape [B], got {tuple(losses.shape)} {losses.dtype}")
        if not bool(torch.isfinite(losses.detach()).all()):
            raise ValueError("losses contains NaN or Inf")
        return losses

    def record(self, index: torch.Tensor, losses: torch.Tensor, epoch: int | None = None) -> None:
        """Store detached per-sample ``losses [B]`` of dataset ``index [B]`` in the column of ``epoch``.

        Under ``torch.distributed`` every rank passes its local batch; indices and losses are gathered
        (rank order, uneven sizes allowed) and every rank writes the whole global batch, so the memory,
        ``mu``/``sigma`` and the flags stay identical across ranks and equal to one process fed the global
        batch. Every rank must call it (a collective). An index repeated within the global batch keeps one
        of its losses (the last one on CPU).
        """
        losses = self._check_losses(losses)
        index = self._check_index(index, losses.shape[0])
        e = self.epoch if epoch is None else int(epoch)
        if not 0 <= e < self.max_epochs:
            raise ValueError(f"epoch must lie in [0, max_epochs={self.max_epochs}), got {e}")
        values = losses.detach().to(self.memory)
        if distributed.is_active():
            all_sizes = distributed.sizes(index.shape[0], index.device)
            index = distributed.gather_no_grad(index, all_sizes)
            values = distributed.gather_no_grad(values, all_sizes)
        self.memory[index, e] = values

    def summary(self, epoch: int) -> torch.Tensor:
        """``m_i`` over the epochs ``t < epoch`` (NaN for indices never recorded)."""
        cols = self.memory[:, :epoch]
        if self.memory_weighting == "linear_epoch":
            t = torch.arange(1, epoch + 1, dtype=cols.dtype, device=cols.device) / self.max_epochs
            cols = cols * t
        return torch.nanmean(cols, dim=1) if epoch > 0 else torch.full_like(self.memory[:, 0], float("nan"))

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (from 0): after warm-up, recompute mu, sigma and the flagged sets."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch = epoch
        self.noisy.zero_()
        self.faulty.zero_()
        if epoch < self.warm_epochs:
            self.mu.fill_(float("nan"))
            self.sigma.fill_(float("nan"))
            return
        m = self.summary(min(epoch, self.max_epochs))
        seen = torch.isfinite(m)
        if int(seen.sum()) < 2:
            return
        mu = m[seen].mean()
        sigma = m[seen].std(unbiased=False)
        self.mu.copy_(mu)
        self.sigma.copy_(sigma)
        if float(sigma) > 0:
            self.noisy.copy_(seen & (m <= mu - self.beta_np * sigma))
            self.faulty.copy_(seen & (m >= mu + self.beta_fp * sigma))
        self.last_stats = {"mu": float(mu), "sigma": float(sigma), "noisy": float(self.noisy.sum()),
                           "faulty": float(self.faulty.sum())}

    @torch.no_grad()
    def forward(self, index: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Detached weights ``w [B]`` for the current per-sample ``losses [B]`` of dataset ``index [B]``."""
        losses = self._check_losses(losses)
        index = self._check_index(index, losses.shape[0])
        flagged = (self.noisy | self.faulty)[index]
        w = torch.ones(losses.shape[0], dtype=torch.float64, device=losses.device)
        if bool(flagged.any()):
            mu, sigma = self.mu.to(losses.device), self.sigma.to(losses.device)
            g = torch.exp(-((losses.detach().double() - mu) ** 2) / (2 * sigma**2))
            if self.pdf_weight:
                g = g / (sigma * math.sqrt(2 * math.pi))
            w = torch.where(flagged.to(losses.device), g, w)
        return w.to(losses.dtype if losses.dtype in (torch.float32, torch.float64) else torch.float32)

    def extra_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, max_epochs={self.max_epochs}, warm_epochs={self.warm_epochs}, "
            f"beta_np={self.beta_np}, beta_fp={self.beta_fp}, memory_weighting={self.memory_weighting!r}, "
            f"pdf_weight={self.pdf_weight}"
        )
