"""Error contrast: InfoNCE over a per-pair *error* matrix of a conditional generative model (SoftREPA).

Paper: Lee, Cha, Kim, Ye, "Aligning Text to Image in Diffusion Models is Easier Than You Think" (SoftREPA, 2025);
official code ``github.com/softrepa/SoftREPA`` (``train.py``, ``ContrastiveLoss``).

For ``B`` samples ``x_i`` and conditions ``c_j`` a conditional denoiser gives a per-pair error
``err[i, j] = mean (target(x_i) - model(x_t,i, t, c_j))^2`` (built by :func:`pairlab.generative.pair_errors`
with one shared noise and timestep per grid). Rows are samples, columns conditions, ``err[i, i]`` the matching
pair. The loss is a cross-entropy over each row::

    form="exp" (faithful, official):  logits[i, j] = scale * exp(-err[i, j] / temp)      temp 0.07, scale 4
    form="log" (explicit option):     logits[i, j] = -err[i, j] / temp                    (diffusion-classifier)
    loss = mean_i [ logsumexp_j logits[i, j] - logits[i, i] ]  +  diag_weight * mean_i err[i, i]

``diag_weight`` ("dweight" in the official code) is 0 for SD3 and 10 for SD1.5/SDXL; default 0.
In the one equation of DESIGN §1 the scores are the logits, ``P`` one-hot on the matching column, ``W = 1``;
the cross-entropy goes through :func:`pairlab.nce.nce` (logsumexp, log-space).

Saturation of the faithful form. Its logits live in ``(0, scale]``, so a row can never be sharper than a
4-logit gap, and once ``err >> temp`` every logit is ~0: the row is uniform, the loss ``~ log B`` and the
gradient ``d logit / d err = -logit / temp`` vanishes. Numbers (``B = 4``, ``temp = 0.07``, ``scale = 4``):

* ``err = 1`` (a flow-matching MSE at large ``t``): ``exp(-1 / 0.07) = 6.2e-7``, logit ``2.5e-6``, gradient
  per unit error ``3.6e-5``: no signal at all.
* diagonal ``0.3`` vs off-diagonal ``0.5``: logits ``0.0551`` vs ``0.0032``, loss ``1.348`` vs
  ``ln 4 = 1.386``: a 0.2 error gap moves the loss by 3%. The log form gives ``logits -4.29`` vs ``-7.14``
  and a loss of ``0.159`` on the same matrix.
* the best the faithful form can reach (diagonal error 0, off-diagonal errors huge) is
  ``log(1 + (B - 1) e^-4) = 0.053`` for ``B = 4``, never 0.

So with the faithful form, choose where the errors live (prediction target, timestep range) so that they are
of the order of ``temp``: in the Fashion-MNIST check (``benchmarks/results/softrepa.md``) velocity errors (~1)
saturate, while x0-prediction errors at ``t in [0.45, 0.95]`` are 0.06-0.2 per pixel (logits 0.24-1.72) and
soft-token training improves the held-out matching rank.

The log form has no ceiling and a constant gradient ``-1/temp`` per unit error, so it keeps a signal where
the faithful form saturates; it is not what the official code computes, hence an explicit ``form="log"``.

Deviations from the official code: ``temp`` and ``scale`` are plain constants (the official code declares them
``nn.Parameter`` but never passes them to the optimiser, so they are constants there too). ``err`` may have more
columns than rows (extra negative conditions), or an explicit ``targets`` column per row; the official code
uses the square ``[B, B]`` grid with the diagonal as target, which is the default here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pairlab._validate import check_choice, check_embeddings, check_labels, check_positive
from pairlab.nce import REDUCTIONS, nce
from pairlab.registry import register

FORMS = ("exp", "log")
DEFAULT_SCALE = 4.0


def _check_weight(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return v


def error_contrast_logits(
    err: torch.Tensor, temp: float = 0.07, scale: float | None = None, form: str = "exp"
) -> torch.Tensor:
    """The logits of :func:`error_contrast_loss` (``[B, M]``, float32 or wider); no validation of ``err``."""
    s = err if err.dtype in (torch.float32, torch.float64) else err.float()
    if form == "exp":
        return (DEFAULT_SCALE if scale is None else scale) * torch.exp(-s / temp)
    return -s / temp


def error_contrast_loss(
    err: torch.Tensor,
    temp: float = 0.07,
    scale: float | None = None,
    form: str = "exp",
    diag_weight: float = 0.0,
    targets: torch.Tensor | None = None,
    reduction: str = "mean",
    return_stats: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, float]]:
    """Error-contrast loss on a per-pair error matrix (see the module docstring).

    Args:
        err: ``[B, M]`` per-pair errors, rows samples, columns conditions; ``M >= B`` when ``targets`` is None
            (column ``i`` is row ``i``'s condition, columns ``B..M-1`` extra negatives). Non-negative for
            ``form="exp"`` (an MSE); any finite value for ``form="log"``.
        temp: temperature (> 0), 0.07 as in the official code.
        scale: logit scale of the exp form (> 0), default 4.0; must stay None for ``form="log"``.
        form: ``"exp"`` (faithful) or ``"log"`` (log-space logits ``-err / temp``).
        diag_weight: weight (>= 0) of ``mean_i err[i, target_i]`` added to the loss (official ``dweight``).
        targets: optional ``[B]`` integer column index of each row's matching condition.
        reduction: ``"mean"`` over rows, ``"sum"``, or ``"none"`` (``[B]``; each row carries its own error term).
        return_stats: also return a dict (mean matching/other logits and errors, matching-column accuracy).
    """
    check_embeddings("err", err, 2, "[B, M]")
    check_choice("form", form, FORMS)
    check_choice("reduction", reduction, REDUCTIONS)
    temp = check_positive("temp", temp)
    if scale is not None:
        if form == "log":
            raise ValueError("scale applies to form='exp' only (the log form is -err/temp); leave scale=None")
        scale = check_positive("scale", scale)
    diag_weight = _check_weight("diag_weight", diag_weight)
    b, m = err.shape
    if m < 2:
        raise ValueError(f"err needs at least 2 condition columns to contrast, got shape {tuple(err.shape)}")
    if targets is None:
        if m < b:
            raise ValueError(
                f"err must have shape [B, M] with M >= B (column i is row i's condition) when targets is None, "
                f"got shape {tuple(err.shape)}; pass targets=[B] column indices otherwise"
            )
        idx = torch.arange(b, device=err.device)
    else:
        idx = check_labels("targets", targets, b, num_classes=m).to(err.device).long()
    if form == "exp" and bool((err.detach() < 0).any()):
        raise ValueError(
            f"err must be >= 0 for form='exp' (an error, e.g. an MSE), got min {float(err.detach().min()):.4g}; "
            "use form='log' for signed scores"
        )

    logits = error_contrast_logits(err, temp, scale, form)
    onehot = torch.zeros(b, m, dtype=torch.bool, device=err.device)
    onehot[torch.arange(b, device=err.device), idx] = True
    res = nce(logits, onehot, reduction="none")
    per_row = res.per_anchor
    e = err if err.dtype in (torch.float32, torch.float64) else err.float()
    diag = e[torch.arange(b, device=err.device), idx]
    if diag_weight > 0:
        per_row = per_row + diag_weight * diag
    if reduction == "mean":
        loss = per_row.mean()
    elif reduction == "sum":
        loss = per_row.sum()
    else:
        loss = per_row
    if not return_stats:
        return loss
    with torch.no_grad():
        other = ~onehot
        stats = {
            "pos_logit_mean": float(logits[onehot].mean()),
            "neg_logit_mean": float(logits[other].mean()),
            "pos_err_mean": float(diag.mean()),
            "neg_err_mean": float(e[other].mean()),
            "accuracy": float((e.argmin(dim=1) == idx).float().mean()),
        }
    return loss, stats


@register("objectives", "error-contrast", input="errors", paper="Lee et al. 2025 (SoftREPA)")
class ErrorContrast(nn.Module):
    """SoftREPA's contrastive loss on a per-pair error matrix ``err [B, B]`` (rows samples, columns conditions).

    ``form="exp"`` (default, faithful): ``logits = scale * exp(-err / temp)``; ``form="log"``:
    ``logits = -err / temp``. Cross-entropy towards the diagonal plus ``diag_weight * mean_i err[i, i]``.
    The faithful form saturates once errors are large compared with ``temp`` (see the module docstring).
    Not driven by the training loop (``input="errors"``): build ``err`` with
    :func:`pairlab.generative.pair_errors`.

    Examples:
        >>> loss = ErrorContrast()(torch.rand(4, 4))
        >>> loss = ErrorContrast(form="log", diag_weight=10.0)(torch.rand(4, 4))
    """

    def __init__(
        self, temp: float = 0.07, scale: float | None = None, form: str = "exp", diag_weight: float = 0.0
    ):
        super().__init__()
        self.form = check_choice("form", form, FORMS)
        self.temp = check_positive("temp", temp)
        if scale is not None and form == "log":
            raise ValueError("scale applies to form='exp' only (the log form is -err/temp); leave scale=None")
        self.scale = None if scale is None else check_positive("scale", scale)
        self.diag_weight = _check_weight("diag_weight", diag_weight)
        self.last_stats: dict[str, float] = {}

    def forward(self, err: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """``err: [B, M]`` (``M >= B``; column ``i`` matches row ``i`` unless ``targets [B]`` is given)."""
        loss, self.last_stats = error_contrast_loss(
            err, self.temp, self.scale, self.form, self.diag_weight, targets, return_stats=True
        )
        return loss

    def extra_repr(self) -> str:
        scale = DEFAULT_SCALE if self.scale is None else self.scale
        s = f"form={self.form!r}, temp={self.temp}, diag_weight={self.diag_weight}"
        return s + (f", scale={scale}" if self.form == "exp" else "")
