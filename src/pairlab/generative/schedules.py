"""Noising schedules for the pair-error builder: ``noiser(x0, noise, t) -> (x_t, target)``.

``t`` is continuous in ``[0, 1]`` (``t = 1`` pure noise); a scalar or a ``[N]`` tensor broadcast over the
trailing dims of ``x0``.

* :class:`FlowMatching` (rectified flow, SD3; SoftREPA's main model): ``x_t = (1 - t) x0 + t eps``, target the
  velocity ``v = eps - x0``.
* :class:`VariancePreserving` (DDPM-style epsilon prediction, SD1.5/SDXL) with the cosine schedule of
  Nichol & Dhariwal (2021): ``abar(t) = cos(pi/2 * (t + s) / (1 + s))^2 / cos(pi/2 * s / (1 + s))^2``,
  ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``, target ``eps``; ``abar`` is clamped to ``[1e-5, 1]``.
"""

from __future__ import annotations

import math

import torch


def _bcast(t: torch.Tensor | float, x0: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or t.shape[0] != x0.shape[0]:
        raise ValueError(f"t must be a scalar or have shape [{x0.shape[0]}] like x0's batch, got {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (x0.ndim - 1)))


class FlowMatching:
    """Rectified flow: ``x_t = (1 - t) x0 + t eps``, target ``v = eps - x0``."""

    name = "flow"

    def __call__(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tb = _bcast(t, x0)
        return (1 - tb) * x0 + tb * noise, noise - x0


class VariancePreserving:
    """Cosine-schedule VP diffusion with epsilon prediction: ``x_t = sqrt(abar) x0 + sqrt(1-abar) eps``."""

    name = "vp"

    def __init__(self, s: float = 0.008):
        self.s = float(s)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        f = torch.cos((t + self.s) / (1 + self.s) * math.pi / 2) ** 2
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2
        return (f / f0).clamp(1e-5, 1.0)

    def __call__(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self.alpha_bar(_bcast(t, x0))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise, noise


SCHEDULES = {"flow": FlowMatching, "vp": VariancePreserving}
