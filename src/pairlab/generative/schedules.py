"""Noising schedules for the pair-error builder: ``noiser(x0, noise, t) -> (x_t, target)``.

``t`` is continuous in ``[0, 1]`` (``t = 1`` pure noise); a scalar or a ``[N]`` tensor broadcast over the
trailing dims of ``x0``.

* :class:`FlowMatching` (rectified flow, SD3; SoftREPA's main model): ``x_t = (1 - t) x0 + t eps``, target the
  velocity ``v = eps - x0`` (default).
* :class:`VariancePreserving` (DDPM-style, SD1.5/SDXL) with the cosine schedule of Nichol & Dhariwal (2021):
  ``abar(t) = cos(pi/2 * (t + s) / (1 + s))^2 / cos(pi/2 * s / (1 + s))^2``,
  ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``, target ``eps`` (default); ``abar`` is clamped to ``[1e-5, 1]``.

Both take ``target=`` to choose what the model predicts (and so what the per-pair error measures):

* ``"eps"``: the noise; ``"x0"``: the clean sample; ``"v"``: the velocity (flow: ``eps - x0``; VP: the
  v-parameterisation of Salimans & Ho (2022), ``sqrt(abar) eps - sqrt(1 - abar) x0``).

For one ``x_t`` the targets are affine in each other, so a perfect model is perfect under all three, but the error
*scale* differs by a ``t``-dependent factor: with the flow schedule an ``x0`` error ``d`` is a velocity error
``d / t`` and a noise error ``d (1 - t) / t``. That scale matters to SoftREPA's faithful ``exp`` logits, which only
have gradient where errors are of the order of ``temp`` (see :mod:`pairlab.objectives.error_contrast`).
"""

from __future__ import annotations

import math

import torch

TARGETS = ("eps", "x0", "v")


def _bcast(t: torch.Tensor | float, x0: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or t.shape[0] != x0.shape[0]:
        raise ValueError(f"t must be a scalar or have shape [{x0.shape[0]}] like x0's batch, got {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (x0.ndim - 1)))


def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)}, got {target!r}")
    return target


class FlowMatching:
    """Rectified flow: ``x_t = (1 - t) x0 + t eps``, target ``v = eps - x0`` (or ``"x0"`` / ``"eps"``)."""

    name = "flow"

    def __init__(self, target: str = "v"):
        self.target = _check_target(target)

    def __call__(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tb = _bcast(t, x0)
        x_t = (1 - tb) * x0 + tb * noise
        if self.target == "v":
            return x_t, noise - x0
        return x_t, (x0 if self.target == "x0" else noise)


class VariancePreserving:
    """Cosine-schedule VP diffusion: ``x_t = sqrt(abar) x0 + sqrt(1-abar) eps``, target ``eps`` (or x0 / v)."""

    name = "vp"

    def __init__(self, s: float = 0.008, target: str = "eps"):
        self.s = float(s)
        self.target = _check_target(target)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        f = torch.cos((t + self.s) / (1 + self.s) * math.pi / 2) ** 2
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2
        return (f / f0).clamp(1e-5, 1.0)

    def __call__(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self.alpha_bar(_bcast(t, x0))
        a, s = ab.sqrt(), (1 - ab).sqrt()
        x_t = a * x0 + s * noise
        if self.target == "eps":
            return x_t, noise
        return x_t, (x0 if self.target == "x0" else a * noise - s * x0)


SCHEDULES = {"flow": FlowMatching, "vp": VariancePreserving}
