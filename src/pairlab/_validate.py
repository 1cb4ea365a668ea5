"""Input validation at the public boundary (DESIGN §4).

Every public objective calls these before computing anything, so a user gets one clear
``ValueError``/``TypeError`` that names the argument, the expected and the received shape or dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_embeddings(
    name: str,
    x: object,
    ndim: int,
    layout: str,
    min_rows: int = 1,
    check_finite: bool = True,
) -> torch.Tensor:
    """Check a float embedding tensor of rank ``ndim`` (``layout`` describes it, e.g. ``"[B, K, D]"``)."""
    x = check_tensor(name, x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (float16/bfloat16/float32/float64), got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {layout} ({ndim} dims), got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(
            f"{name} must have at least {min_rows} rows in its first dim {layout}, got shape {tuple(x.shape)}"
        )
    if x.shape[-1] < 1:
        raise ValueError(f"{name} has an empty embedding dim: shape {tuple(x.shape)}")
    if check_finite:
        check_all_finite(name, x)
    return x


def check_all_finite(name: str, x: torch.Tensor) -> None:
    """Raise if ``x`` contains NaN or Inf, naming the first bad row (one cheap reduction)."""
    if x.numel() == 0:
        return
    # sum is one pass and propagates NaN/Inf; only on failure do we locate the rows.
    total = x.detach().float().sum() if x.dtype in (torch.float16, torch.bfloat16) else x.detach().sum()
    if not torch.isfinite(total):
        bad = ~torch.isfinite(x.detach()).reshape(x.shape[0], -1).all(dim=1)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise ValueError(f"{name} contains NaN or Inf in rows {rows} (of {x.shape[0]})")


def check_same_dim(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    dims = [t.shape[-1] for t in tensors]
    if len(set(dims)) > 1:
        desc = ", ".join(f"{n}: {tuple(t.shape)}" for n, t in zip(names, tensors, strict=True))
        raise ValueError(f"embedding dims must match ({desc})")


def check_same_batch(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    sizes = [t.shape[0] for t in tensors]
    if len(set(sizes)) > 1:
        desc = ", ".join(f"{n}: {tuple(t.shape)}" for n, t in zip(names, tensors, strict=True))
        raise ValueError(f"batch sizes must match ({desc})")


def check_labels(name: str, labels: object, n: int, num_classes: int | None = None) -> torch.Tensor:
    labels = check_tensor(name, labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"{name} must be an integer tensor of shape [{n}], got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}], got shape {tuple(labels.shape)}")
    if num_classes is not None and labels.numel() > 0:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{lo}, {hi}]")
    return labels


def check_positive(name: str, value: float) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        v = float(value.detach())
    else:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not (v > 0) or v != v or v == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return v


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value
