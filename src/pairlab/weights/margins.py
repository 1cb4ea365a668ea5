"""Margins as partition weights, calibrated per-pair margins, and the MCLRec margin regulariser.

**Additive margins are weights.** With scores ``s = cos / tau``, an additive cosine margin ``m`` on every
positive (``s_p <- (cos_p - m) / tau``) gives, for any number of positives (mean-log or log-mean)::

    -(s_p - m/tau) + log(sum_pos e^{s - m/tau} + sum_neg e^{s})  =  -s_p + log(sum_pos e^s + e^{m/tau} sum_neg e^s)

i.e. exactly ``W_neg = exp(m / tau)``, ``W_pos = 1`` (:class:`PositiveMarginWeights`). InterCLR's "decision
boundary" (Xie et al., IJCV 2022, mmselfsup ``interclr_moco.py``) is ``m = -0.5`` (less stringent: the
positive gets ``+0.5/tau``), so ``W_neg = exp(-0.5 / tau)``. A margin per negative, added to that
negative's cosine (``s_ij <- (cos_ij + m_ij) / tau``), is ``W_ij = exp(m_ij / tau)``.

**Calibrated margins** (the idea of "Concrete Jungle"/Cement: the margin of a hard negative grows with a
psycholinguistic score of the edit, e.g. the concreteness of the edited word; the paper's exact equations
are unverified, so nothing here carries its name): ``m_ij = m0 + m1 * c_ij`` with ``c_ij in [0, 1]``,

- as weights in the InfoNCE partition (:class:`CalibratedMarginWeights`), ``W_ij = exp(m_ij / tau)``;
- as the hinge of the reconstruction (:func:`calibrated_margin_hinge`),
  ``mean_j relu(m_ij - (cos_ip - cos_ij))``: zero gradient once a pair is separated by its margin.

**MCLRec regulariser** (Qin et al., SIGIR 2023, ``mclrec.py::meta_contrast_rl``; :func:`margin_regularizer`)::

    lo = min(min pos, max neg),  hi = max(min pos, max neg)          (batch-global scalars)
    reg = mean relu(pos - lo) + mean relu(hi - neg)

Worked values (spec): ``pos=5, neg=[0, 1] -> 8.5``; ``pos=1, neg=[0.9, 1.0] -> 0.05``. The official code
does not detach ``lo``/``hi``; neither does this function.

Margins are given in cosine units and converted with ``temperature`` (pass the objective's ``tau``).
"""

from __future__ import annotations

import math

import torch

from pairlab._validate import check_positive, check_tensor
from pairlab.registry import register
from pairlab.weights.base import PairWeights, negatives_mask


def _finite(name: str, v: float) -> float:
    x = float(v)
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"{name} must be a finite number, got {v}")
    return x


@register("weights", "positive-margin", applies_to="partition", paper="Xie et al. 2022 (InterCLR margin)")
class PositiveMarginWeights(PairWeights):
    """Additive cosine margin ``m`` on the positives as ``W_neg = exp(m / tau)`` (exact).

    Args:
        margin: ``m`` in cosine units (InterCLR: -0.5; CosFace-style stricter margins are > 0).
        temperature: the objective's ``tau``.
    """

    def __init__(self, margin: float = -0.5, temperature: float = 0.2):
        super().__init__()
        self.margin = _finite("margin", margin)
        self.temperature = check_positive("temperature", temperature)

    def weights(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        neg = negatives_mask(targets, valid)
        w = torch.ones_like(scores)
        return w.masked_fill(neg, math.exp(self.margin / self.temperature))

    def extra_repr(self) -> str:
        return f"margin={self.margin}, temperature={self.temperature}"


@register("weights", "calibrated-margin", applies_to="partition",
          paper="idea of Concrete Jungle (Cement); equations unverified")
class CalibratedMarginWeights(PairWeights):
    """Per-negative margins ``m_ij = m0 + m1 c_ij`` added to the negatives' cosines: ``W = exp(m / tau)``.

    Args:
        m0, m1: base margin and calibration slope (cosine units).
        temperature: the objective's ``tau``.
        calibration: ``c`` in ``[0, 1]``: ``[M]`` (one per candidate column) or ``[N, M]``; ``None`` = 0.
            Set or replace it per step with :meth:`set_calibration`.
    """

    def __init__(self, m0: float = 0.0, m1: float = 0.2, temperature: float = 0.1,
                 calibration: torch.Tensor | None = None):
        super().__init__()
        self.m0, self.m1 = _finite("m0", m0), _finite("m1", m1)
        self.temperature = check_positive("temperature", temperature)
        self.calibration: torch.Tensor | None = None
        if calibration is not None:
            self.set_calibration(calibration)

    def set_calibration(self, calibration: torch.Tensor | None) -> None:
        if calibration is not None:
            check_tensor("calibration", calibration)
            if calibration.ndim not in (1, 2) or not calibration.dtype.is_floating_point:
                raise ValueError(f"calibration must be a float tensor [M] or [N, M], got "
                                 f"{tuple(calibration.shape)} {calibration.dtype}")
            c = calibration.detach()
            if not bool(torch.isfinite(c).all()) or bool((c < 0).any()) or bool((c > 1).any()):
                raise ValueError("calibration must lie in [0, 1] (normalise the scores first)")
        self.calibration = calibration

    def weights(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        neg = negatives_mask(targets, valid)
        n, m = scores.shape
        c = torch.zeros_like(scores) if self.calibration is None else self.calibration.to(scores)
        if c.shape not in ((m,), (n, m)):
            raise ValueError(f"calibration must have shape [{m}] or [{n}, {m}] (the score columns), "
                             f"got {tuple(c.shape)}")
        logw = (self.m0 + self.m1 * c.expand(n, m)) / self.temperature
        return torch.where(neg, torch.exp(logw), torch.ones_like(scores))

    def extra_repr(self) -> str:
        return f"m0={self.m0}, m1={self.m1}, temperature={self.temperature}"


def calibrated_margin_hinge(
    pos: torch.Tensor, neg: torch.Tensor, calibration: torch.Tensor | None = None,
    m0: float = 0.1, m1: float = 0.2, valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean relu(m0 + m1 c_ij - (pos_i - neg_ij))`` over valid pairs; cosines ``pos [N]``, ``neg [N, J]``."""
    check_tensor("pos", pos)
    check_tensor("neg", neg)
    if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(f"pos must be [N] and neg [N, J], got {tuple(pos.shape)} and {tuple(neg.shape)}")
    c = torch.zeros_like(neg) if calibration is None else calibration.to(neg)
    if c.shape != neg.shape:
        raise ValueError(f"calibration must have shape {tuple(neg.shape)} like neg, got {tuple(c.shape)}")
    h = torch.relu(_finite("m0", m0) + _finite("m1", m1) * c - (pos[:, None] - neg))
    if valid is None:
        return h.mean()
    if tuple(valid.shape) != tuple(neg.shape):
        raise ValueError(f"valid must have shape {tuple(neg.shape)}, got {tuple(valid.shape)}")
    v = valid.bool()
    if not bool(v.any()):
        raise ValueError("valid selects no pair: the hinge is undefined")
    return h[v].mean()


def margin_regularizer(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """MCLRec: ``mean relu(pos - lo) + mean relu(hi - neg)``, ``lo/hi = min/max(min pos, max neg)``."""
    check_tensor("pos", pos)
    check_tensor("neg", neg)
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError(f"pos and neg must be non-empty, got {tuple(pos.shape)} and {tuple(neg.shape)}")
    a, b = pos.min(), neg.max()
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    return torch.relu(pos - lo).mean() + torch.relu(hi - neg).mean()
