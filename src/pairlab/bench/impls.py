"""The loss implementations compared by ``pairlab bench loss``, each on the same raw inputs.

Inputs: ``x0 ~ N(0, 1)`` of shape ``[N, d]`` and ``x1 = x0 + 0.7 noise``, leaf tensors with gradient;
every implementation L2-normalises them itself (its gradient includes the normalisation). Two forms:

- ``simclr``: the 2N x 2N NT-Xent of SimCLR (both views are anchors, 2N - 2 negatives, mean over 2N).
  ``pairlab`` (NTXent, backend auto), ``pairlab-dense``, ``torch-ce`` (plain cross-entropy over the
  masked 2N x 2N logits), ``torch-ce-compile`` (the same under ``torch.compile``), ``lightly``
  (``lightly.loss.NTXentLoss``), ``pml-supcon`` (pytorch-metric-learning ``SupConLoss`` on both views,
  labels = sample index: the same value for two views), ``pml-ntxent`` (PML ``NTXentLoss``: O(N^3) memory).
- ``clip``: the N x N two-direction CLIP loss (mean of both directions). ``pairlab`` (CLIPLoss),
  ``pairlab-dense``, ``open_clip`` (``ClipLoss`` on normalised features with ``logit_scale = 1/tau``),
  ``info_nce`` (info-nce-pytorch ``InfoNCE`` in both directions, averaged).

:func:`make` returns ``step(x0, x1) -> loss``; a missing peer raises :class:`PeerUnavailable`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

FORMS = ("simclr", "clip")
IMPLS: dict[str, tuple[str, ...]] = {
    "simclr": ("pairlab", "pairlab-dense", "torch-ce", "torch-ce-compile", "lightly", "pml-supcon", "pml-ntxent"),
    "clip": ("pairlab", "pairlab-dense", "open_clip", "info_nce"),
}

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class PeerUnavailable(RuntimeError):
    """The peer library is not installed or cannot be imported here."""


def _import(name: str, stub: bool = False):
    if stub:
        from pairlab.bench.stubs import install_torchvision_stub

        install_torchvision_stub()
    try:
        return importlib.import_module(name)
    except Exception as e:  # ImportError, or a peer's import-time failure
        raise PeerUnavailable(f"cannot import {name}: {type(e).__name__}: {e}") from None


def _open_clip_loss():
    """``open_clip.loss``; if the package ``__init__`` fails (tokenizer deps), load loss.py alone."""
    try:
        return _import("open_clip.loss", stub=True)
    except PeerUnavailable as first:
        spec = importlib.util.find_spec("open_clip")
        if spec is None or not spec.submodule_search_locations:
            raise first from None
        path = Path(list(spec.submodule_search_locations)[0]) / "loss.py"
        mspec = importlib.util.spec_from_file_location("open_clip_loss_only", path)
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
        return mod


def naive_simclr(x0: torch.Tensor, x1: torch.Tensor, tau: float) -> torch.Tensor:
    """Plain PyTorch SimCLR: cross-entropy over the 2N x 2N logits with the diagonal masked."""
    n = x0.shape[0]
    z = F.normalize(torch.cat([x0, x1]), dim=1)
    logits = (z @ z.T) / tau
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, target)


def make(impl: str, form: str, tau: float = 0.1) -> Step:
    """The loss step of ``impl`` in ``form``; raises ValueError for unknown names."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {list(FORMS)}, got {form!r}")
    if impl not in IMPLS[form]:
        raise ValueError(f"impl for form {form!r} must be one of {list(IMPLS[form])}, got {impl!r}")
    if form == "simclr":
        return _simclr(impl, tau)
    return _clip(impl, tau)


def _simclr(impl: str, tau: float) -> Step:
    if impl in ("pairlab", "pairlab-dense"):
        from pairlab import NTXent

        obj = NTXent(temperature=tau, backend="auto" if impl == "pairlab" else "dense")
        return lambda x0, x1: obj(torch.stack([x0, x1], dim=1))
    if impl == "torch-ce":
        return lambda x0, x1: naive_simclr(x0, x1, tau)
    if impl == "torch-ce-compile":
        fn = torch.compile(lambda x0, x1: naive_simclr(x0, x1, tau), dynamic=False)
        return fn
    if impl == "lightly":
        loss = _import("lightly.loss", stub=True).NTXentLoss(temperature=tau)
        return lambda x0, x1: loss(x0, x1)
    losses = _import("pytorch_metric_learning.losses")
    cls = losses.SupConLoss if impl == "pml-supcon" else losses.NTXentLoss
    loss = cls(temperature=tau)

    def pml(x0, x1):
        n = x0.shape[0]
        labels = torch.arange(n, device=x0.device).repeat(2)
        return loss(torch.cat([x0, x1]), labels)

    return pml


def _clip(impl: str, tau: float) -> Step:
    if impl in ("pairlab", "pairlab-dense"):
        from pairlab import CLIPLoss

        obj = CLIPLoss(temperature=tau, backend="auto" if impl == "pairlab" else "dense")
        return lambda x0, x1: obj(x0, x1)
    if impl == "open_clip":
        loss = _open_clip_loss().ClipLoss()
        return lambda x0, x1: loss(F.normalize(x0, dim=1), F.normalize(x1, dim=1), logit_scale=1.0 / tau)
    info = _import("info_nce").InfoNCE(temperature=tau)
    return lambda x0, x1: (info(x0, x1) + info(x1, x0)) / 2


def inputs(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``x0 ~ N(0, 1)``, ``x1 = x0 + 0.7 noise``, both ``[n, d]`` leaves with gradient."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=dtype)
    x1 = x0 + 0.7 * torch.randn(n, d, generator=g, dtype=dtype)
    return x0.requires_grad_(True), x1.requires_grad_(True)
